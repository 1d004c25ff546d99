"""Compiled CPU kernels: the plain-Python loops an op keeps beside its portable code, compiled with
numba on the NumPy backend (`@kernel`, `parallel_range`, `compile_kernel`); which run, "compiled"
or "portable", is DIYNN_KERNELS / `set_kernels(name)`. While the kernels are on, numba's thread pool
owns the cores and NumPy's BLAS runs one thread on the caller's (`blas_gemm`, `matmul_into`). Why,
and what forked children and the disk cache do: docs/concepts/backends.md#compiled-cpu-kernels.
"""

from __future__ import annotations

import ctypes
import functools
import hashlib
import os
import threading
import types
from pathlib import Path

import numpy as np

from .base import BackendError

try:
    import numba
except ImportError:  # the portable kernels run instead; set_kernels("compiled") says why not
    numba = None

parallel_range = numba.prange if numba is not None else range
"""The loop of a kernel that runs in parallel when compiled (numba's prange; `range` without numba)."""
NAMES = ("compiled", "portable")

ROW_MAJOR, NO_TRANSPOSE, TRANSPOSE = 101, 111, 112  # CBLAS's enumerations
# elementwise work on fewer elements than this runs faster in NumPy than through a parallel launch
# (about 5 us a call): the biases' optimiser updates, a small batch's activations
SMALLEST_PARALLEL_WORK = 2**14
"""Elementwise work on fewer elements than this runs as portable NumPy code: a parallel launch costs ~5 us."""

_setting: str | None = None
_threads = 1  # numba's pool size while the compiled kernels are on
_launch = threading.Lock()  # one parallel loop at a time: each uses every core
_compiled: dict = {}
_blas_threads: dict = {}  # BLAS library file -> its thread count before the kernels took the cores


def kernel(function=None, *, reassociate=False, contract=False):
    """Mark `function` (plain loops over arrays) as a kernel that `compile_kernel` compiles and other kernels may call.

    Use as `@kernel`, `@kernel(reassociate=True)` or `@kernel(contract=True)`.

    Args:
        function: the kernel, a plain Python function.
        reassociate: let the compiler reorder its sums (vectorised reductions; the rounding then
            differs from a sequential sum's); implies `contract`.
        contract: let the compiler fuse a * b + c into one multiply-add, rounded once (polynomials:
            fewer instructions, and as accurate or more), without reordering anything else.

    Returns:
        function: the same function, marked.
    """
    if function is None:
        return lambda function: kernel(function, reassociate=reassociate, contract=contract)
    function.is_kernel, function.reassociate, function.contract = True, reassociate, contract
    return function


def kernels() -> str:
    """The kernels in use: "compiled" or "portable" (DIYNN_KERNELS, read on first call)."""
    if _setting is None:
        set_kernels(os.environ.get("DIYNN_KERNELS", "compiled").strip().lower() or "compiled")
    return _setting


def set_kernels(name: str) -> str:
    """Run the compiled kernels ("compiled") or only the portable array code ("portable").

    Args:
        name: "compiled" or "portable".

    Returns:
        name: the setting now in use.

    Raises:
        BackendError: an unknown name, or "compiled" without numba installed.
    """
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


def flat_views(*arrays) -> list:
    """The NumPy arrays as 1-D (views where contiguous) for a kernel's flat loop. The compiled paths
    hold NumPy arrays: `ravel` costs 0.09 us a call, `reshape(-1)` 0.19, the array namespace's 0.75."""
    return [array.ravel() for array in arrays]


def empty(shape, dtype):
    """An uninitialised C-order NumPy array for a kernel to write (0.27 us a call; the array
    namespace's empty 0.9)."""
    return np.empty(shape, dtype=dtype)


def kernel_threads() -> int:
    """How many threads the compiled kernels split their work over (1 with portable kernels): the
    size given to numba's pool when the kernels took the cores (read on every op, so kept here:
    asking numba costs microseconds)."""
    return _threads if kernels() == "compiled" else 1


@functools.lru_cache(maxsize=256)
def chunk_bounds(count: int, parts: int):
    """Bounds of `parts` contiguous chunks of range(count) (fewer if count is smaller), the larger ones first.

    Returns:
        bounds: int64 array [0, ..., count], shared between calls: read only.
    """
    parts = max(1, min(parts, count))
    sizes = np.full(parts, count // parts, dtype=np.int64)
    sizes[: count % parts] += 1
    bounds = np.concatenate(([0], np.cumsum(sizes)))
    bounds.flags.writeable = False
    return bounds


def blas_gemm(dtype):
    """NumPy's own BLAS `cblas_?gemm` for float32 or float64 `dtype`, callable from a compiled kernel.

    Returns:
        gemm: a ctypes function; pass it in and call it through `matmul_into`.

    Raises:
        BackendError: the compiled kernels are off, or another dtype.
    """
    gemm = _gemms.get(dtype)  # an array's dtype: the fast path of every compiled product
    if gemm is None:
        if _setting != "compiled":
            raise BackendError("blas_gemm serves the compiled kernels, and they are off")
        gemm = _gemms.get(np.dtype(dtype))
        if gemm is None:
            raise BackendError(f"the compiled products take float32 or float64 arrays, got {np.dtype(dtype).name}")
    return gemm


def compile_kernel(function):
    """`function` compiled for the CPU, or None where compiled kernels are off. Calls from several
    Python threads take turns (each kernel already uses every core)."""
    if kernels() != "compiled":
        return None
    compiled = _compiled.get(function)
    if compiled is None:
        compiled = _compiled[function] = _one_at_a_time(_jit(function))
    return compiled


def _one_at_a_time(compiled):
    def call(*arguments):
        with _launch:
            return compiled(*arguments)

    call.compiled = compiled  # what other kernels call: the compiled function itself
    return call


def _jit(function):
    """Compile `function` with every kernel it calls (found among its global names) compiled
    first and bound in its globals."""
    names, scope = function.__code__.co_names, function.__globals__
    fastmath = {"reassoc", "contract"} if function.reassociate else {"contract"} if function.contract else False
    called = _called_kernels(function)
    scope = {**scope, **{name: compile_kernel(callee).compiled for name, callee in called.items()}}
    caller = function
    function = types.FunctionType(function.__code__, scope, function.__name__, function.__defaults__)
    function.__qualname__ = f"{caller.__qualname__}__{_sources_digest(caller)}"
    uses_prange = "parallel_range" in names
    # numba caches on disk beside a source file: a kernel typed into a REPL (no file) compiles anew
    cache = Path(caller.__code__.co_filename).is_file()
    return numba.njit(parallel=uses_prange, fastmath=fastmath, cache=cache, nogil=True, error_model="numpy")(function)


def _called_kernels(function) -> dict:
    """{global name: kernel} of the kernels `function` calls."""
    scope = function.__globals__
    return {name: scope[name] for name in function.__code__.co_names if getattr(scope.get(name), "is_kernel", False)}


def _sources_digest(function) -> str:
    """A digest of `function`'s module name and of the source files of every kernel it calls,
    directly or not, other than its own file. numba's disk cache checks only the compiled
    function's own file, but a caller's compiled code contains its callees' code and names the
    modules it was compiled in: with the digest in the cached name, a change to a callee in another
    file, or a module's new import name, compiles anew instead of loading stale code."""
    seen, pending = set(), list(_called_kernels(function).values())
    while pending:
        callee = pending.pop()
        if callee not in seen:
            seen.add(callee)
            pending += _called_kernels(callee).values()
    digest = hashlib.sha256(str(function.__module__).encode())  # None for code run by exec
    for name in sorted({callee.__code__.co_filename for callee in seen} - {function.__code__.co_filename}):
        digest.update(name.encode() + b"\0" + Path(name).read_bytes())
    return digest.hexdigest()[:12]


def _after_fork_in_child() -> None:
    """A forked child cannot use GNU OpenMP's pool once its parent has (numba's "omp" layer ends the
    process): such a child runs the portable code."""
    global _launch
    _launch = threading.Lock()
    if _setting == "compiled" and _pool() == "omp":
        set_kernels("portable")


def _pool() -> str | None:
    """numba's threading layer in use, or None before its first parallel loop."""
    try:
        return numba.threading_layer()
    except ValueError:
        return None


if numba is not None:
    os.register_at_fork(after_in_child=_after_fork_in_child)


def _blas_controllers():
    import threadpoolctl

    return [lib for lib in threadpoolctl.ThreadpoolController().lib_controllers if lib.user_api == "blas"]


# the cblas_?gemm names a BLAS may export: (prefix, suffix, integer type) for OpenBLAS as NumPy's
# wheels build it (64-bit integers, prefixed), 64-bit builds, and the plain 32-bit interface (MKL)
GEMM_SYMBOLS = (("scipy_", "64_", ctypes.c_int64), ("", "64_", ctypes.c_int64), ("", "", ctypes.c_int))


def _numpy_gemms(blas):
    """(threadpoolctl controller, {float32: cblas_sgemm, float64: cblas_dgemm}) of the BLAS
    NumPy was built with (the one under numpy's folder where there are several)."""
    numpy_folder = os.path.dirname(os.path.dirname(np.__file__))
    blas = sorted(blas, key=lambda lib: not lib.filepath.startswith(os.path.join(numpy_folder, "numpy")))
    for lib in blas:
        library = ctypes.CDLL(lib.filepath)
        for prefix, suffix, integer in GEMM_SYMBOLS:
            if hasattr(library, f"{prefix}cblas_sgemm{suffix}"):
                return lib, {
                    np.dtype(dtype): _gemm_function(
                        getattr(library, f"{prefix}cblas_{letter}gemm{suffix}"), integer, real
                    )
                    for dtype, letter, real in (("float32", "s", ctypes.c_float), ("float64", "d", ctypes.c_double))
                }
    raise BackendError(
        "compiled kernels need NumPy's BLAS to export cblas_sgemm (OpenBLAS, MKL); none found. "
        "Choose the portable code: DIYNN_KERNELS=portable or set_kernels('portable')"
    )


def _gemm_function(function, integer, real):
    """cblas_?gemm(order, trans_a, trans_b, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc) typed."""
    function.restype = None
    pointer = ctypes.c_void_p
    function.argtypes = (
        [ctypes.c_int] * 3 + [integer] * 3 + [real, pointer, integer, pointer, integer, real, pointer, integer]
    )
    return function


_gemms: dict = {}


def _take_cores() -> None:
    """Size numba's pool as NumPy's BLAS pool is now, and hold the BLAS at one thread."""
    blas, gemms = _numpy_gemms(_blas_controllers())
    _gemms.update(gemms)
    global _threads
    _threads = max(1, min(blas.num_threads, numba.config.NUMBA_NUM_THREADS))
    numba.set_num_threads(_threads)
    _blas_threads.setdefault(blas.filepath, blas.num_threads)
    blas.set_num_threads(1)


def _give_back_cores() -> None:
    for lib in _blas_controllers():
        if lib.filepath in _blas_threads:
            lib.set_num_threads(_blas_threads.pop(lib.filepath))


@kernel
def matmul_into(gemm, a, b, out, accumulate):
    """out = a @ b, or out += a @ b if `accumulate`, in one call of `gemm` on the calling thread (a kernel).

    Args:
        gemm: from `blas_gemm`, for the arrays' dtype.
        a: (M, K), a row-major view with any row stride, or the transpose of one (as x[:, j0:j1].T).
        b: (K, N), likewise.
        out: (M, N), row-major with unit column stride.
        accumulate: add the product to out instead of overwriting it.
    """
    m, k, n = a.shape[0], a.shape[1], b.shape[1]
    if m == 0 or n == 0:
        return
    if k == 0:
        if not accumulate:
            out[:] = 0
        return
    a_order, a_stride = _operand(a)
    b_order, b_stride = _operand(b)
    row_stride = max(out.strides[0] // out.itemsize, n)
    beta = 1.0 if accumulate else 0.0
    gemm(
        ROW_MAJOR,
        a_order,
        b_order,
        m,
        n,
        k,
        1.0,
        a.ctypes.data,
        a_stride,
        b.ctypes.data,
        b_stride,
        beta,
        out.ctypes.data,
        row_stride,
    )


@kernel
def _operand(x):
    """(CBLAS transpose flag, leading dimension) of a 2-D view for a row-major product."""
    rows, columns = x.shape
    if x.strides[1] == x.itemsize or columns == 1:
        return NO_TRANSPOSE, max(x.strides[0] // x.itemsize, columns, 1)
    return TRANSPOSE, max(x.strides[1] // x.itemsize, rows, 1)
