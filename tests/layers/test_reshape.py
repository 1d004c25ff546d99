"""Flatten, Unflatten and Permute (diynn/layers/reshape.py)."""

import numpy as np
import pytest

import diynn
from diynn import (
    Flatten,
    Permute,
    Unflatten,
    gradcheck,
)


def test_flatten_and_unflatten_gradients(backend, numpy_rng):
    assert gradcheck(diynn.Sequential(Flatten(), Unflatten((3, 4))), numpy_rng.normal(size=(2, 3, 4)))


@pytest.mark.parametrize(
    "start_dim, end_dim, shape",
    [(1, -1, (2, 60)), (2, -1, (2, 3, 20)), (1, 2, (2, 12, 5)), (-2, -1, (2, 3, 20)), (0, 1, (6, 4, 5))],
)
def test_flatten_between_axes_as_pytorch(backend, numpy_rng, start_dim, end_dim, shape):
    x = numpy_rng.normal(size=(2, 3, 4, 5))
    layer = Flatten(start_dim, end_dim)
    y = layer(backend.asarray(x))
    assert tuple(y.shape) == shape
    np.testing.assert_array_equal(backend.to_numpy(y), x.reshape(shape))  # torch.flatten is this reshape
    assert gradcheck(diynn.Sequential(layer, diynn.Tanh()), x)


def test_permute_reorders_axes_and_back(backend, numpy_rng):
    x = numpy_rng.normal(size=(2, 3, 4, 5))
    layer = Permute((0, 2, 3, 1))
    y = layer(backend.asarray(x))
    np.testing.assert_array_equal(backend.to_numpy(y), x.transpose(0, 2, 3, 1))
    assert gradcheck(diynn.Sequential(layer, diynn.Tanh(), Permute([2, 0, 3, 1])), x)


def test_shape_layers_save_load_and_refuse_bad_arguments(tmp_path):
    model = diynn.Sequential(diynn.Conv2d(1, 4, 2, stride=2, rng=0), Flatten(2), Permute((0, 2, 1)))
    loaded = diynn.load_model(diynn.save_model(model, tmp_path / "m.npz"))
    assert repr(loaded) == repr(model)
    x = np.random.default_rng(0).random((2, 1, 6, 6), dtype=np.float32)
    np.testing.assert_array_equal(loaded.eval()(x), model.eval()(x))
    with pytest.raises(ValueError, match=r"Flatten\(start_dim=3, end_dim=1\) needs axes in order"):
        Flatten(3, 1)(x)
    with pytest.raises(ValueError, match="within the input's 4"):
        Flatten(4)(x)
    with pytest.raises(TypeError, match="start_dim must be an integer"):
        Flatten(1.5)
    with pytest.raises(ValueError, match="Permute's dims must order the axes 0 to 2"):
        Permute((0, 2, 2))
    with pytest.raises(TypeError, match="Permute's dims must be a list"):
        Permute(2)
    with pytest.raises(ValueError, match=r"Permute\(0, 2, 1\) expects an input with 3 axes"):
        Permute((0, 2, 1))(x)
