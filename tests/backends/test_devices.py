"""A model lives on one backend: model.to(name) moves it, load_model(..., backend=) loads onto one,
and an input from another backend is a one-line error naming both. Run between NumPy and the
strict array-API backend (and CuPy where a GPU is present)."""

import numpy as np
import pytest
from conftest import AVAILABLE

import diynn
from diynn import backends

OTHERS = [name for name in AVAILABLE if name != "numpy"]
SAME_RESULTS = {"rtol": 1e-5, "atol": 1e-6}  # a GPU sums in another order than NumPy


def small_cnn():
    with backends.use("numpy"):
        return diynn.Sequential(
            diynn.Conv2d(1, 4, 3, padding=1, rng=0),
            diynn.BatchNorm2d(4),
            diynn.ReLU(),
            diynn.MaxPool2d(2),
            diynn.Flatten(),
            diynn.Dropout(0.2, rng=1),
            diynn.Linear(4 * 4 * 4, 3, rng=2),
        )


def images(n=6, seed=0):
    rng = np.random.default_rng(seed)
    return rng.random((n, 1, 8, 8), dtype=np.float32), rng.integers(0, 3, n)


@pytest.mark.parametrize("name", OTHERS)
def test_to_moves_parameters_and_buffers(name):
    model = small_cnn()
    x, _ = images()
    expected = diynn.predict(model, x)
    assert model.to(name) is model
    target = backends.get(name)
    assert model.backend is target
    for value in model.state_dict().values():
        assert backends.backend_of(value) is target
    got = target.to_numpy(model.eval()(target.asarray(x)))
    np.testing.assert_allclose(got, expected, **SAME_RESULTS)
    model.to("numpy")
    assert model.backend.name == "numpy"
    np.testing.assert_allclose(diynn.predict(model, x), expected, rtol=1e-6)


@pytest.mark.parametrize("name", OTHERS)
def test_an_input_on_another_backend_is_an_error_naming_both(name):
    model = small_cnn().to(name)
    x, _ = images()
    with pytest.raises(TypeError, match=f"input on backend 'numpy' but its parameters are on '{name}'"):
        model(x)


@pytest.mark.parametrize("name", OTHERS)
def test_training_a_moved_model_brings_the_data_to_it(name):
    model = small_cnn().to(name)
    x, y = images(12)
    trainer = diynn.Trainer(model, diynn.CrossEntropyLoss(), diynn.Adam(model.parameters(), lr=0.01))
    history = trainer.fit(x, y, epochs=2, batch_size=4, progress=False)
    assert len(history["loss"]) == 2 and np.isfinite(history["loss"]).all()
    assert model.backend.name == name
    assert 0 <= diynn.accuracy(model, x, y) <= 1


@pytest.mark.parametrize("name", OTHERS)
def test_a_moved_model_trains_like_the_original(name):
    """Same seeds, same data: the moved model follows the same trajectory (dropout included).
    CuPy draws its own random numbers (shuffles, dropout masks), so there two runs are compared."""
    x, y = images(12)
    losses = []
    for target in ("numpy" if name != "cupy" else name, name):
        model = small_cnn().to(target)
        trainer = diynn.Trainer(model, diynn.CrossEntropyLoss(), diynn.SGD(model.parameters(), lr=0.05))
        losses.append(trainer.fit(x, y, epochs=2, batch_size=4, progress=False)["loss"])
    np.testing.assert_allclose(losses[1], losses[0], rtol=1e-5)


@pytest.mark.parametrize("name", OTHERS)
def test_load_model_onto_a_chosen_backend(tmp_path, name):
    model = small_cnn()
    path = diynn.save_model(model, tmp_path / "model.npz")
    active = diynn.get_backend()
    loaded = diynn.load_model(path, backend=name)
    assert loaded.backend.name == name
    assert diynn.get_backend() is active  # the active backend is left alone
    x, _ = images()
    target = backends.get(name)
    got = target.to_numpy(loaded.eval()(target.asarray(x)))
    np.testing.assert_allclose(got, diynn.predict(model, x), **SAME_RESULTS)


def test_to_an_unknown_backend_is_a_clear_error():
    with pytest.raises(backends.BackendError, match="unknown backend 'tpu'"):
        small_cnn().to("tpu")
