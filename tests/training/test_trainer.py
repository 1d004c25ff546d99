import sys

import numpy as np
import pytest

import diynn
from diynn import CrossEntropyLoss, StopTraining, Trainer, TrainingDiverged


def blobs(numpy_rng, n=120):
    centres = np.array([[2.0, 0.0], [-2.0, 0.0], [0.0, 2.5]])
    labels = numpy_rng.integers(0, 3, size=n)
    return centres[labels] + 0.5 * numpy_rng.normal(size=(n, 2)), labels


def make_trainer(seed=0, lr=0.05):
    model = diynn.mlp([2, 16, 3], rng=seed)
    return Trainer(model, CrossEntropyLoss(), diynn.Adam(model.parameters(), lr=lr))


def test_fit_learns_and_reports_history(backend, numpy_rng):
    x, y = blobs(numpy_rng)
    trainer = make_trainer()
    history = trainer.fit(x, y, epochs=15, batch_size=16, validation_data=(x[:40], y[:40]), progress=False)
    assert set(history) == {"loss", "accuracy", "val_loss", "val_accuracy", "time"}
    assert all(len(values) == 15 for values in history.values())
    assert history["loss"][-1] < 0.5 * history["loss"][0]
    assert history["accuracy"][-1] > 0.9
    assert diynn.accuracy(trainer.model, x, y) > 0.9
    evaluation = trainer.evaluate(x[:40], y[:40])
    assert evaluation["accuracy"] == pytest.approx(history["val_accuracy"][-1])


def test_same_seed_same_weights(backend, numpy_rng):
    x, y = blobs(numpy_rng)
    weights = []
    for _ in range(2):
        trainer = make_trainer(seed=3)
        trainer.fit(x, y, epochs=2, batch_size=32, seed=5, progress=False)
        weights.append([backend.to_numpy(p.data) for p in trainer.model.parameters()])
    for a, b in zip(*weights):
        np.testing.assert_array_equal(a, b)
    other = make_trainer(seed=3)
    other.fit(x, y, epochs=2, batch_size=32, seed=6, progress=False)
    assert not np.array_equal(backend.to_numpy(other.model.parameters()[0].data), weights[0][0])


def test_inputs_are_converted_once_to_float32(backend, numpy_rng):
    x, y = blobs(numpy_rng)
    trainer = make_trainer()
    x32, y64 = trainer.prepare(x, y.astype(np.int32))
    assert x32.dtype == backend.xp.float32 and y64.dtype == backend.xp.int64
    output = diynn.predict(trainer.model, x)
    assert output.dtype == backend.xp.float32 and tuple(output.shape) == (len(x), 3)


class TokenMean(diynn.Module):
    """(N, L, E) -> (N, E), the mean over the tokens."""

    def forward(self, x):
        self.save_for_backward(x.shape[1])
        return backend_xp(x).mean(x, axis=1)

    def backward(self, grad_output, input_grad=True):
        length = self.saved_for_backward()
        xp = backend_xp(grad_output)
        return xp.expand_dims(grad_output / length, axis=1) * xp.ones((1, length, 1), dtype=grad_output.dtype)


def backend_xp(array):
    return diynn.backends.backend_of(array).xp


def test_integer_tokens_stay_integers_through_fit_and_predict(backend, numpy_rng):
    """Token ids are not converted to the parameters' dtype (an Embedding refuses floats); the
    class of a sequence is whether token 1 occurs more often than token 2."""
    tokens = numpy_rng.integers(0, 4, size=(96, 6))
    labels = ((tokens == 1).sum(axis=1) > (tokens == 2).sum(axis=1)).astype(np.int64)
    model = diynn.Sequential(diynn.Embedding(4, 8, rng=0), TokenMean(), diynn.Linear(8, 2, rng=1))
    trainer = Trainer(model, CrossEntropyLoss(), diynn.Adam(model.parameters(), lr=0.05))
    x, _ = trainer.prepare(tokens.astype(np.int32), labels)
    assert x.dtype == backend.xp.int32
    history = trainer.fit(tokens, labels, epochs=10, batch_size=16, validation_data=(tokens, labels), progress=False)
    assert history["loss"][-1] < 0.5 * history["loss"][0] and history["val_accuracy"][-1] > 0.9
    assert diynn.accuracy(model, tokens.tolist(), labels) == history["val_accuracy"][-1]
    assert diynn.predict(model, tokens).dtype == backend.xp.float32


def test_integer_features_are_converted_for_a_model_without_an_embedding(backend):
    """XOR as lists of ints, and uint8 images: converted to float32 once, as any real input."""
    model = diynn.mlp([2, 8, 2], activation="tanh", rng=0)
    trainer = Trainer(model, CrossEntropyLoss(), diynn.Adam(model.parameters(), lr=0.05))
    x, _ = trainer.prepare([[0, 0], [0, 1], [1, 0], [1, 1]], [0, 1, 1, 0])
    assert x.dtype == backend.xp.float32 and not model.takes_indices
    trainer.fit([[0, 0], [0, 1], [1, 0], [1, 1]], [0, 1, 1, 0], epochs=2, batch_size=4, progress=False)
    images = np.arange(2 * 2, dtype=np.uint8).reshape(2, 2)
    assert diynn.predict(model, images).dtype == backend.xp.float32


@pytest.mark.filterwarnings("ignore:invalid value:RuntimeWarning", "ignore:overflow:RuntimeWarning")
def test_divergence_names_epoch_and_step(numpy_rng):
    x, y = blobs(numpy_rng)
    trainer = make_trainer(lr=1e30)  # a step that throws the weights to overflow
    with pytest.raises(TrainingDiverged, match=r"loss became (nan|inf) at epoch 1, step \d+ of 8"):
        trainer.fit(x, y, epochs=3, batch_size=16, progress=False)


def test_non_finite_inputs_are_rejected_before_training(numpy_rng):
    x, y = blobs(numpy_rng)
    x[50, 1] = np.inf
    trainer = make_trainer()
    with pytest.raises(ValueError, match=r"fit: x contains NaN or infinite values \(first in sample 50\): the data"):
        trainer.fit(x, y, epochs=3, batch_size=16, progress=False)
    x[50, 1] = 0.0
    x_val = x[:10].copy()
    x_val[3, 0] = np.nan
    with pytest.raises(ValueError, match=r"validation_data: x contains NaN .*sample 3"):
        trainer.fit(x, y, epochs=1, validation_data=(x_val, y[:10]), progress=False)
    with pytest.raises(ValueError, match=r"predict: x contains NaN"):
        trainer.predict(x_val)


def test_callback_can_stop_training(numpy_rng):
    x, y = blobs(numpy_rng)

    def stop_after_two(epoch, history):
        if epoch == 2:
            raise StopTraining

    history = make_trainer().fit(x, y, epochs=10, progress=False, callbacks=[stop_after_two])
    assert len(history["loss"]) == 2


def test_mismatched_lengths_and_bad_batch_size(numpy_rng):
    x, y = blobs(numpy_rng)
    with pytest.raises(ValueError, match="120 samples but y has 100"):
        make_trainer().fit(x, y[:100], progress=False)
    with pytest.raises(ValueError, match="batch_size"):
        make_trainer().fit(x, y, batch_size=0, progress=False)


def test_predict_keeps_the_models_mode(numpy_rng):
    trainer = make_trainer()
    trainer.model.eval()
    diynn.predict(trainer.model, numpy_rng.normal(size=(3, 2)))
    assert not trainer.model.training


def test_progress_bar_is_drawn_where_it_can_be_seen(monkeypatch):
    """None: a bar on a terminal (or a Jupyter widget), none in a log; True forces a text bar."""
    from diynn.training.progress import progress_bar

    monkeypatch.setattr(sys.stderr, "isatty", lambda: False)
    assert progress_bar(range(3), None) is None and progress_bar(range(3), False) is None
    forced = progress_bar(range(3), True, leave=False, disable=False)
    assert list(forced) == [0, 1, 2] and type(forced).__module__ == "tqdm.std"
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True)
    assert progress_bar(range(3), None) is not None
