"""Compiled CPU kernels: the plain-Python loops an op keeps beside its portable code, compiled with
numba on the NumPy backend.

An op marks each loop function `@kernel` and writes its parallel loop with `parallel_range`
(numba's `prange`; plain `range` where numba is absent). `compile_kernel(function)` returns the
function compiled (parallel, cached on disk), with the kernels it calls compiled too, or None
where compiled kernels are off: the op then runs its portable array code, which stays the
reference the tests compare the kernels with.

Which kernels run: "compiled" (default) or "portable", from DIYNN_KERNELS, `set_kernels(name)`.

Threads: with compiled kernels on, numba's pool owns the cores. The kernels split the batch into
one chunk per thread and each chunk's matrix products call a one-thread BLAS, so no second
thread pool spins beside numba's (OpenBLAS's workers keep spinning after every product and take
the cores numba's threads need). The pool's size is NumPy's BLAS thread count when the kernels
were switched on (it follows OMP_NUM_THREADS, OPENBLAS_NUM_THREADS and threadpoolctl's limits);
NumPy's and SciPy's BLAS are held at one thread until `set_kernels("portable")` gives them back.
The compiled code is cached next to diynn's sources, or in numba's per-user cache folder where
the install is read-only (NUMBA_CACHE_DIR moves it).
"""

from __future__ import annotations

import os
import types

import numpy as np

from .base import BackendError

try:
    import numba
except ImportError:  # the portable kernels run instead; set_kernels("compiled") says why not
    numba = None

parallel_range = numba.prange if numba is not None else range
NAMES = ("compiled", "portable")

_setting: str | None = None
_compiled: dict = {}
_blas_threads: dict = {}  # BLAS library file -> its thread count before the kernels took the cores


def kernel(function):
    """Mark `function` (plain loops over arrays) as a kernel that `compile_kernel` compiles, and
    that other kernels may call."""
    function.is_kernel = True
    return function


def kernels() -> str:
    """The kernels in use: "compiled" or "portable" (DIYNN_KERNELS, read on first call)."""
    if _setting is None:
        set_kernels(os.environ.get("DIYNN_KERNELS", "compiled").strip().lower() or "compiled")
    return _setting


def set_kernels(name: str) -> str:
    """Run the compiled kernels ("compiled") or only the portable array code ("portable")."""
    global _setting
    if name not in NAMES:
        raise BackendError(f"unknown kernels {name!r}; valid names are: {', '.join(NAMES)}")
    if name == "compiled" and numba is None:
        raise BackendError(
            "compiled kernels need numba (pip install numba), or choose the portable code: "
            "DIYNN_KERNELS=portable or set_kernels('portable')"
        )
    if name != _setting:
        _take_cores() if name == "compiled" else _give_back_cores()
    _setting = name
    return name


def kernel_threads() -> int:
    """How many threads the compiled kernels split their work over (1 with portable kernels)."""
    return numba.get_num_threads() if kernels() == "compiled" else 1


def chunk_bounds(count: int, parts: int):
    """Bounds of `parts` (fewer if count is smaller) contiguous chunks of range(count), the larger
    ones first: int64 array [0, ..., count]."""
    parts = max(1, min(parts, count))
    sizes = np.full(parts, count // parts, dtype=np.int64)
    sizes[: count % parts] += 1
    return np.concatenate(([0], np.cumsum(sizes)))


def compile_kernel(function):
    """`function` compiled for the CPU, or None where compiled kernels are off."""
    if kernels() != "compiled":
        return None
    compiled = _compiled.get(function)
    if compiled is None:
        compiled = _compiled[function] = _jit(function)
    return compiled


def _jit(function):
    """Compile `function` with every kernel it calls (found among its global names) compiled
    first and bound in its globals."""
    names, scope = function.__code__.co_names, function.__globals__
    called = {name: scope[name] for name in names if getattr(scope.get(name), "is_kernel", False)}
    if called:
        scope = {**scope, **{name: compile_kernel(callee) for name, callee in called.items()}}
        function = types.FunctionType(function.__code__, scope, function.__name__, function.__defaults__)
    uses_prange = "parallel_range" in names
    return numba.njit(parallel=uses_prange, cache=True, nogil=True, error_model="numpy")(function)


def _blas_controllers():
    import scipy.linalg.cython_blas  # noqa: F401  (the BLAS numba's products call: loaded, so limited too)
    import threadpoolctl

    return [lib for lib in threadpoolctl.ThreadpoolController().lib_controllers if lib.user_api == "blas"]


def _take_cores() -> None:
    blas = _blas_controllers()
    count = max((lib.num_threads for lib in blas), default=numba.config.NUMBA_NUM_THREADS)
    numba.set_num_threads(max(1, min(count, numba.config.NUMBA_NUM_THREADS)))
    for lib in blas:
        _blas_threads.setdefault(lib.filepath, lib.num_threads)
        lib.set_num_threads(1)


def _give_back_cores() -> None:
    for lib in _blas_controllers():
        if lib.filepath in _blas_threads:
            lib.set_num_threads(_blas_threads.pop(lib.filepath))
