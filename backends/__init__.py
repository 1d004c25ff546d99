"""Which array library diynn computes with: NumPy (CPU), CuPy (CUDA GPU) or array-api-strict.

A computation takes its backend from its arrays: `backend_of(x)`. The *active* backend only
says where new arrays (parameters, data sets) are created; it comes from the environment
variable DIYNN_BACKEND (default "numpy"), read on first use, and can be switched with
`set_backend(name)` or, for a block, `with use(name):`.
"""

from __future__ import annotations

import contextlib
import os

from .base import Backend, BackendError, Generator
from .cpu_kernels import (
    SMALLEST_PARALLEL_WORK,
    blas_gemm,
    chunk_bounds,
    empty,
    flat_views,
    kernel,
    kernel_threads,
    kernels,
    matmul_into,
    parallel_range,
    set_kernels,
)
from .elementwise import Elementwise
from .fast_math import erf_float32, exp_float32

__all__ = [
    "Backend",
    "BackendError",
    "Elementwise",
    "Generator",
    "NAMES",
    "SMALLEST_PARALLEL_WORK",
    "backend_of",
    "blas_gemm",
    "chunk_bounds",
    "empty",
    "erf_float32",
    "exp_float32",
    "flat_views",
    "get",
    "kernel",
    "kernel_threads",
    "kernels",
    "matmul_into",
    "parallel_range",
    "set_kernels",
    "get_backend",
    "set_backend",
    "use",
]

NAMES = ("numpy", "cupy", "array_api_strict")
"""The backends' names, each that of its array library (NumPy, CuPy, array-api-strict)."""


_active: Backend | None = None
_instances: dict[str, Backend] = {}


def _create(name: str) -> Backend:
    if name == "numpy":
        from .numpy_backend import NumpyBackend

        return NumpyBackend()
    if name == "array_api_strict":
        try:
            from .strict_backend import StrictBackend
        except ImportError as error:
            raise BackendError(
                "backend 'array_api_strict' needs the package array-api-strict (pip install array-api-strict)"
            ) from error
        return StrictBackend()
    if name == "cupy":
        return _create_cupy()
    raise BackendError(f"unknown backend {name!r}; valid names are: {', '.join(NAMES)}")


def _create_cupy() -> Backend:
    try:
        import cupy
    except ImportError as error:
        raise BackendError(
            "backend 'cupy' was asked for but CuPy is not installed "
            "(pip install cupy-cuda12x or cupy-cuda13x, matching the CUDA version nvidia-smi reports)"
        ) from error
    try:
        count = cupy.cuda.runtime.getDeviceCount()
    except cupy.cuda.runtime.CUDARuntimeError as error:
        raise BackendError(f"backend 'cupy' was asked for but CUDA is unusable: {error}") from error
    if count == 0:
        raise BackendError("backend 'cupy' was asked for but no CUDA device is present")
    from .cupy_backend import CupyBackend

    return CupyBackend()


def get(name: str) -> Backend:
    """The backend called `name`, created on first use and then shared.

    Args:
        name: one of NAMES; a Backend is returned as it is.

    Returns:
        backend: the Backend.

    Raises:
        BackendError: an unknown name, or a backend that cannot run here (its library missing, or no
            CUDA device for "cupy").
        TypeError: a name that is not a string.
    """
    if isinstance(name, Backend):
        return name
    if not isinstance(name, str):
        raise TypeError(f"a backend is named by a string (one of {', '.join(NAMES)}), got {name!r}")
    if name not in _instances:
        _instances[name] = _create(name)
    return _instances[name]


_by_type: dict[type, Backend] = {}


def backend_of(array) -> Backend:
    """The backend that `array` belongs to, from its type (NumPy, CuPy or array-api-strict).

    Args:
        array: an array of one of the backends' libraries.

    Returns:
        backend: its Backend.

    Raises:
        TypeError: not an array of a backend's library.
    """
    kind = type(array)
    backend = _by_type.get(kind)
    if backend is None:
        name = kind.__module__.partition(".")[0]  # each backend is named after its array library
        if name not in NAMES:
            raise TypeError(
                f"expected an array (NumPy, CuPy or array-api-strict), got {kind.__name__}; "
                "convert it with diynn.get_backend().asarray(...)"
            )
        backend = _by_type[kind] = get(name)
    return backend


def get_backend() -> Backend:
    """The active backend: where new arrays (parameters, data sets) are made.

    Created from the environment variable DIYNN_BACKEND (default "numpy") on the first call.

    Returns:
        backend: the active Backend.
    """
    global _active
    if _active is None:
        _active = get(os.environ.get("DIYNN_BACKEND", "numpy").strip().lower() or "numpy")
    return _active


def set_backend(name: str) -> Backend:
    """Make `name` the active backend and return it.

    Args:
        name: one of NAMES, or a Backend.

    Returns:
        backend: the Backend now active.

    Raises:
        BackendError: an unknown name, or a backend that cannot run here.
    """
    global _active
    _active = get(name)
    return _active


@contextlib.contextmanager
def use(name: str):
    """A context manager: run a block with backend `name` active, then restore the previous one.

    Use as `with diynn.use("cupy") as backend: ...`.

    Args:
        name: one of NAMES, or a Backend.

    Raises:
        BackendError: an unknown name, or a backend that cannot run here.
    """
    global _active
    previous = _active
    try:
        yield set_backend(name)
    finally:
        _active = previous
