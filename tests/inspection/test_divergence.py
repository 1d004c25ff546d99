"""A diverging fit names where its first NaN or infinity arose (diynn.inspection.divergence): the
module, the pass and the array, with the learning-rate advice only where it fits, and no raw NumPy
warnings on the way."""

import re
import warnings

import numpy as np
import pytest

import diynn
from diynn import CrossEntropyLoss, Dropout, Linear, Module, ReLU, Sequential, Trainer, TrainingDiverged
from diynn.backends import backend_of
from diynn.inspection import divergence
from diynn.training.steps import CheckedStep, PlainStep


class Broken(Module):
    """Passes its input on, and its backward returns NaN."""

    def forward(self, x):
        return x

    def backward(self, grad_output, input_grad=True):
        return grad_output * float("nan")


class Log(Module):
    """y = log(x): NaN where x < 0, from a finite input."""

    def forward(self, x):
        self.save_for_backward(x)
        return backend_of(x).xp.log(x)

    def backward(self, grad_output, input_grad=True):
        return grad_output / self.saved_for_backward()


def blobs(numpy_rng, n=64):
    centres = np.array([[2.0, 0.0], [-2.0, 0.0], [0.0, 2.5]])
    labels = numpy_rng.integers(0, 3, size=n)
    return centres[labels] + 0.5 * numpy_rng.normal(size=(n, 2)), labels


def diverged(model, x, y, lr=0.05, optimizer=diynn.Adam, **fit):
    """The TrainingDiverged message of a fit, and that no RuntimeWarning was emitted on the way."""
    trainer = Trainer(model, CrossEntropyLoss(), optimizer(model.parameters(), lr=lr))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with pytest.raises(TrainingDiverged) as raised:
            trainer.fit(x, y, progress=False, **{"epochs": 3, "batch_size": 32, **fit})
    assert not [w for w in caught if issubclass(w.category, RuntimeWarning)], [str(w.message) for w in caught]
    return str(raised.value)


def test_an_infinite_weight_is_named_in_the_forward(backend, numpy_rng):
    model = diynn.mlp([2, 16, 3], rng=0)
    weight = backend.to_numpy(model[2].weight.data).copy()
    weight[1, 4] = np.inf
    model[2].weight.data = backend.asarray(weight, dtype=backend.xp.float32)
    message = diverged(model, *blobs(numpy_rng))
    assert message.startswith("loss became nan at epoch 1, step 1 of 2 (samples 0..31 of the shuffled epoch): ")
    assert (
        "(2) Linear: forward output has NaN and inf (its weight holds 1 non-finite value before this fit's" in message
    )
    assert "learning rate" not in message  # it was so before training: no update made it


def test_a_layer_whose_backward_returns_nan_is_named(backend, numpy_rng):
    model = Sequential(Linear(2, 16, rng=0), Broken(), ReLU(), Linear(16, 3, rng=1))
    message = diverged(model, *blobs(numpy_rng))
    # the loss of step 1 is finite; its NaN gradients spoil the weights, and step 2's loss
    assert message.startswith("loss became nan at epoch 1, step 2 of 2")
    assert re.search(
        r"; it began at step 1: \(1\) Broken: backward returned NaN \(its output gradient was finite, "
        r"largest magnitude [\d.e+-]+\)$",
        message,
    )
    assert "learning rate" not in message


def test_weights_spoilt_by_the_last_step_of_an_epoch_are_caught_at_its_end(numpy_rng):
    x, y = blobs(numpy_rng, n=32)
    model = Sequential(Linear(2, 16, rng=0), Broken(), ReLU(), Linear(16, 3, rng=1))
    message = diverged(model, x, y, batch_size=32)  # one step per epoch: its loss is finite
    assert message.startswith("the weights became NaN or infinite in epoch 1, whose losses were all finite; ")
    assert "it began at step 1: (1) Broken: backward returned NaN" in message


def test_a_layer_making_nan_from_a_finite_input_is_named(backend, numpy_rng):
    model = Sequential(Linear(2, 16, rng=0), ReLU(), Linear(16, 16, rng=2), Log(), Linear(16, 3, rng=1))
    message = diverged(model, *blobs(numpy_rng))
    assert message.startswith("loss became nan at epoch 1, step 1 of 2")
    assert re.search(
        r": \(3\) Log: forward output has NaN \(its input was finite, in \[-\d[\d.]*, \d[\d.]*\]\)$", message
    )
    assert "learning rate" not in message


def test_a_too_large_learning_rate_gets_the_advice(backend, numpy_rng):
    message = diverged(diynn.mlp([2, 16, 3], rng=0), *blobs(numpy_rng), lr=1e30)
    assert message.startswith("loss became nan at epoch 1, step 2 of 2")
    assert "(2) Linear: forward output has inf" in message
    assert message.endswith("; try a smaller learning rate")


def test_a_slow_divergence_with_dropout_is_re_run_exactly(numpy_rng):
    model = Sequential(Linear(2, 32, rng=0), ReLU(), Dropout(0.3, rng=5), Linear(32, 3, rng=1))
    message = diverged(model, *blobs(numpy_rng), lr=1e15, optimizer=diynn.SGD, epochs=30)
    assert "stayed finite" not in message and "began at step" not in message  # the same masks: the same step
    assert message.endswith("; try a smaller learning rate")


def test_a_nested_module_is_named_by_its_path(numpy_rng):
    inner = Sequential(Linear(2, 8, rng=0), Log())
    model = Sequential(Linear(2, 2, rng=3), inner, Linear(8, 3, rng=1))
    message = diverged(model, *blobs(numpy_rng))
    assert ": (1.1) Log: forward output has NaN" in message


def test_the_checked_step_trains_as_the_plain_step(backend, numpy_rng):
    x, y = blobs(numpy_rng)
    weights = []
    for checked in (False, True):
        model = Sequential(Linear(2, 16, rng=0), ReLU(), Dropout(0.2, rng=1), Linear(16, 3, rng=2))
        trainer = Trainer(model, CrossEntropyLoss(), diynn.Adam(model.parameters(), lr=0.01), clip_norm=1.0)
        xb, yb = trainer.prepare(x, y)
        watch = divergence.Watch(model, trainer.loss, first_update=True, losses=[])
        with watch:
            step = CheckedStep(trainer, watch) if checked else PlainStep(trainer)
            for _ in range(3):
                step(xb, yb, None)
        assert watch.step == (3 if checked else 0)
        weights.append([backend.to_numpy(p.data) for p in model.parameters()])
    for plain, checked in zip(*weights):
        np.testing.assert_array_equal(plain, checked)


class NaNOnce(Module):
    """Passes its input on, except at its second call, which gives NaN: a fault a re-run misses."""

    calls = 0

    def forward(self, x):
        self.calls += 1
        return x * float("nan") if self.calls == 2 else x

    def backward(self, grad_output, input_grad=True):
        return grad_output


def test_a_fault_the_re_run_does_not_meet_keeps_the_general_advice(numpy_rng):
    model = Sequential(Linear(2, 3, rng=0), NaNOnce())
    message = diverged(model, *blobs(numpy_rng))
    assert message.startswith("loss became nan at epoch 1, step 2 of 2")
    assert "it stayed finite" in message and "try a smaller learning rate" in message


def test_an_augmentation_that_makes_nan_is_named(numpy_rng):
    message = diverged(diynn.mlp([2, 8, 3], rng=0), *blobs(numpy_rng), augment=lambda xb: xb * float("nan"))
    assert message.endswith(": the batch holds NaN (the data are finite: an augmentation made it)")
