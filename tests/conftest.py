"""Shared fixtures: `backend` runs a test once per available backend (NumPy, the strict array-API
stand-in, and CuPy when a GPU is present). Tests without the fixture run on the active backend,
DIYNN_BACKEND's (NumPy by default): `DIYNN_BACKEND=cupy python -m pytest` runs them on the GPU."""

import numpy as np
import pytest

import backends


def _available():
    names = ["numpy", "array_api_strict"]
    try:
        backends.get("cupy")
        names.append("cupy")
    except backends.BackendError:
        pass
    return names


AVAILABLE = _available()


@pytest.fixture(params=AVAILABLE)
def backend(request):
    with backends.use(request.param) as active:
        yield active


@pytest.fixture
def numpy_rng():
    return np.random.default_rng(1234)


def cupy_graph_refusal():
    """Why CuPy cannot record a matrix product in a CUDA graph (CuPy refuses cuBLAS calls while
    capturing, as of CuPy 14), or None where it can."""
    backend = backends.get("cupy")
    a = backend.xp.ones((4, 4), dtype=backend.xp.float32)
    try:
        backend.graph().capture(lambda: a @ a)
    except backends.BackendError as error:
        return str(error)
    return None


def fashion_mnist_present() -> bool:
    """Whether the real Fashion-MNIST is installed where diynn looks (never downloaded by a test)."""
    from diynn.datasets import FASHION_MNIST, search_folders

    return any((folder / FASHION_MNIST.files[0].name).is_file() for folder in search_folders(FASHION_MNIST, None))
