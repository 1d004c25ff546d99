"""Shared fixtures: `backend` runs a test once per available backend (NumPy, the strict array-API
stand-in, and CuPy when a GPU is present)."""

import numpy as np
import pytest

import backends


def _available():
    names = ["numpy", "array_api_strict"]
    try:
        backends.set_backend("cupy")
        names.append("cupy")
    except backends.BackendError:
        pass
    finally:
        backends.set_backend("numpy")
    return names


AVAILABLE = _available()


@pytest.fixture(params=AVAILABLE)
def backend(request):
    with backends.use(request.param) as active:
        yield active


@pytest.fixture
def numpy_rng():
    return np.random.default_rng(1234)
