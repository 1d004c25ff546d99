"""Dropout (diynn/layers/dropout.py, diynn/functional/dropout.py)."""

import numpy as np
import pytest

import diynn
from diynn import (
    Dropout,
    gradcheck,
)


def test_dropout_scales_and_is_identity_in_eval(backend, numpy_rng):
    layer = Dropout(0.25, rng=0)
    x = backend.asarray(np.ones((200, 50), np.float32))
    y = backend.to_numpy(layer(x))
    assert set(np.unique(y)) <= {0.0, np.float32(1 / 0.75)}
    assert (y == 0).mean() == pytest.approx(0.25, abs=0.02)
    grad = backend.to_numpy(layer.backward(backend.asarray(np.full((200, 50), 2.0, np.float32))))
    np.testing.assert_array_equal(grad, 2 * y)  # the same mask scales the gradient
    layer.eval()
    assert layer(x) is x
    with diynn.enable_grad():  # a backward in eval mode
        assert layer(x) is x and layer.backward(x) is x
    with pytest.raises(ValueError, match=r"\[0, 1\)"):
        Dropout(1.0)


def test_dropout_gradients_with_a_fixed_mask(backend, numpy_rng):
    class FixedMaskDropout(Dropout):
        def forward(self, x):
            self.rng = backend.rng(0)  # the same mask on every call, so finite differences apply
            return super().forward(x)

    assert gradcheck(FixedMaskDropout(0.3), numpy_rng.normal(size=(4, 6)))
