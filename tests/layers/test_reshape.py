"""Flatten and Unflatten (diynn/layers/reshape.py)."""

import diynn
from diynn import (
    Flatten,
    Unflatten,
    gradcheck,
)


def test_flatten_and_unflatten_gradients(backend, numpy_rng):
    assert gradcheck(diynn.Sequential(Flatten(), Unflatten((3, 4))), numpy_rng.normal(size=(2, 3, 4)))
