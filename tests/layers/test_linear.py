"""The fully connected layer (diynn/layers/linear.py)."""

import numpy as np
import pytest

from diynn import Linear, gradcheck
from diynn import functional as F


@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("init", ["kaiming", "xavier"])
def test_linear_gradients(backend, bias, init, numpy_rng):
    assert gradcheck(Linear(5, 3, bias=bias, init=init, rng=0), numpy_rng.normal(size=(4, 5)))


def test_linear_is_float32_by_default(backend):
    layer = Linear(3, 2, rng=0)
    y = layer(backend.asarray(np.ones((4, 3), np.float32)))
    assert layer.weight.data.dtype == backend.xp.float32 and y.dtype == backend.xp.float32


def test_linear_initialisation_scale(backend):
    kaiming = backend.to_numpy(Linear(1000, 200, rng=0).weight.data)
    xavier = backend.to_numpy(Linear(1000, 200, init="xavier", rng=0).weight.data)
    assert kaiming.std() == pytest.approx(np.sqrt(2 / 1000), rel=0.02)
    assert np.abs(xavier).max() <= np.sqrt(6 / 1200)
    assert xavier.std() == pytest.approx(np.sqrt(2 / 1200), rel=0.02)
    with pytest.raises(ValueError, match="unknown init 'zeros'"):
        Linear(2, 2, init="zeros")


def test_functional_linear_rejects_operands_that_do_not_fit(backend):
    weight = backend.asarray(np.ones((2, 3), np.float32))
    with pytest.raises(ValueError, match=r"linear expects size 3 on axis 1, got shape \(4, 5\)"):
        F.linear(backend.asarray(np.ones((4, 5), np.float32)), weight)
    with pytest.raises(TypeError, match=r"linear expects dtype \S*float32 .* got \S*float64"):
        F.linear(backend.asarray(np.ones((4, 3), np.float64)), weight)
    x = backend.asarray(np.ones((4, 3), np.float32))
    with pytest.raises(ValueError, match=r"linear's bias expects size 2 on axis 0, got shape \(1,\)"):
        F.linear(x, weight, backend.asarray(np.ones(1, np.float32)))  # would broadcast
    with pytest.raises(ValueError, match=r"linear's weight expects an input with 2 axes, got shape \(3,\)"):
        F.linear(x, backend.asarray(np.ones(3, np.float32)))


def test_linear_rejects_wrong_shape_and_dtype(backend):
    layer = Linear(3, 2, rng=0)
    with pytest.raises(ValueError, match=r"size 3 on axis 1, got shape \(4, 5\)"):
        layer(backend.asarray(np.ones((4, 5), np.float32)))
    with pytest.raises(ValueError, match="2 axes"):
        layer(backend.asarray(np.ones((4,), np.float32)))
    with pytest.raises(TypeError, match="float64"):
        layer(backend.asarray(np.ones((4, 3), np.float64)))
