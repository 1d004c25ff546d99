"""Sequential (diynn/layers/containers.py)."""

import pytest

from diynn import Linear, ReLU, Sequential, Sigmoid, Tanh, gradcheck


def test_sequential_gradients(backend, numpy_rng):
    model = Sequential(Linear(6, 8, rng=1), Tanh(), Linear(8, 4, rng=2), Sigmoid())
    assert gradcheck(model, numpy_rng.normal(size=(3, 6)))


def test_sequential_rejects_non_modules():
    with pytest.raises(TypeError, match="item 1 is int"):
        Sequential(ReLU(), 3)
