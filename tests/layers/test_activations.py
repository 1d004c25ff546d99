"""Elementwise activations and Softmax (diynn/layers/activations.py)."""

import numpy as np
import pytest

from diynn import LeakyReLU, ReLU, Sigmoid, Softmax, Tanh, gradcheck

ELEMENTWISE = [ReLU, lambda: LeakyReLU(0.1), Tanh, Sigmoid, Softmax, lambda: Softmax(axis=0)]


@pytest.mark.parametrize("make", ELEMENTWISE, ids=["relu", "leaky", "tanh", "sigmoid", "softmax", "softmax0"])
def test_activation_gradients(backend, make, numpy_rng):
    assert gradcheck(make(), numpy_rng.normal(size=(4, 5)))


def test_sigmoid_does_not_overflow(backend):
    y = backend.to_numpy(Sigmoid()(backend.asarray(np.array([-1000.0, 0.0, 1000.0], np.float32))))
    np.testing.assert_array_equal(y, [0.0, 0.5, 1.0])
