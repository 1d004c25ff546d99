"""Matrix products through a cuBLAS handle of our own (ctypes), for the CuPy backend while it
records a CUDA graph.

CuPy refuses its own cuBLAS calls while a stream is capturing (as of CuPy 14), but cuBLAS itself
records a product on the capturing stream when the handle is bound to that stream and has a fixed
workspace (benchmarks/gpu_check.py's probe showed it on an H100). So while a graph records, the
backend's `matmul` calls cuBLAS's ?gemm directly on this handle; the workspace is allocated before
the recording starts and never changes.

cuBLAS is column-major: the row-major product out (M, N) = a (M, K) @ b (K, N) is, read
column-major, out^T = b^T a^T, and a row-major array read column-major is its transpose. So b
goes first, a second, each untransposed when C-contiguous (leading dimension: its columns) and
transposed when F-contiguous, i.e. a transposed view (leading dimension: its rows).
"""

from __future__ import annotations

import ctypes

from .base import BackendError

LIBRARY_NAMES = ("libcublas.so.13", "libcublas.so.12", "libcublas.so")
NO_TRANSPOSE, TRANSPOSE = 0, 1  # cublasOperation_t
WORKSPACE_BYTES = 32 * 2**20  # what cuBLAS asks for on Hopper (its CUDA-graph notes)


def load_cublas():
    """The cuBLAS library (the one CuPy's wheel or the CUDA toolkit provides), its functions typed."""
    for name in LIBRARY_NAMES:
        try:
            library = ctypes.CDLL(name)
            break
        except OSError:
            continue
    else:
        raise BackendError(f"no cuBLAS library found (tried {', '.join(LIBRARY_NAMES)})")
    pointer, integer = ctypes.c_void_p, ctypes.c_int
    library.cublasCreate_v2.argtypes = [ctypes.POINTER(pointer)]
    library.cublasSetStream_v2.argtypes = [pointer, pointer]
    library.cublasSetWorkspace_v2.argtypes = [pointer, pointer, ctypes.c_size_t]
    for gemm, real in ((library.cublasSgemm_v2, ctypes.c_float), (library.cublasDgemm_v2, ctypes.c_double)):
        gemm.argtypes = [pointer, integer, integer, integer, integer, integer, ctypes.POINTER(real)]
        gemm.argtypes += [pointer, integer, pointer, integer, ctypes.POINTER(real), pointer, integer]
    return library


class CublasProducts:
    """`matmul(a, b)` for 2-D float32/float64 arrays on the current stream, through one handle."""

    def __init__(self, library, xp, pointer, current_stream):
        """library: cuBLAS (see load_cublas); xp: the array namespace; pointer(array): its device
        address; current_stream(): the handle (int) of the stream work goes to."""
        self._library, self._xp, self._pointer, self._current_stream = library, xp, pointer, current_stream
        self._handle = ctypes.c_void_p()
        _check(library.cublasCreate_v2(ctypes.byref(self._handle)), "cublasCreate_v2")
        self._workspace = xp.empty(WORKSPACE_BYTES, dtype=xp.uint8)
        address = ctypes.c_void_p(pointer(self._workspace))
        _check(library.cublasSetWorkspace_v2(self._handle, address, WORKSPACE_BYTES), "cublasSetWorkspace_v2")
        self._stream = None
        self._gemms = {
            "float32": (library.cublasSgemm_v2, ctypes.c_float),
            "float64": (library.cublasDgemm_v2, ctypes.c_double),
        }

    def matmul(self, a, b):
        """a (M, K) @ b (K, N) -> a new C-contiguous (M, N) array."""
        (m, k), n = a.shape, b.shape[1]
        if b.shape[0] != k or a.dtype != b.dtype or str(a.dtype) not in self._gemms:
            raise BackendError(
                f"cuBLAS product of {a.shape} {a.dtype} and {b.shape} {b.dtype}: shapes or dtypes differ"
            )
        out = self._xp.empty((m, n), dtype=a.dtype)
        if k == 0 or m == 0 or n == 0:
            out[...] = 0
            return out
        (operation_b, leading_b, b), (operation_a, leading_a, a) = self._operand(b), self._operand(a)
        stream = self._current_stream()
        if stream != self._stream:
            _check(self._library.cublasSetStream_v2(self._handle, ctypes.c_void_p(stream)), "cublasSetStream_v2")
            self._stream = stream
        gemm, real = self._gemms[str(a.dtype)]
        one, zero = real(1.0), real(0.0)
        pointers = [ctypes.c_void_p(self._pointer(array)) for array in (b, a, out)]
        status = gemm(
            self._handle, operation_b, operation_a, n, m, k, ctypes.byref(one),
            pointers[0], leading_b, pointers[1], leading_a, ctypes.byref(zero), pointers[2], n,
        )  # fmt: skip
        _check(status, "cublas?gemm_v2")
        return out

    def _operand(self, x):
        """(operation, leading dimension, array) reading x (R, C) as cuBLAS reads it: a C-order x
        as is (its column-major reading is x^T; leading dimension C), an F-order x transposed
        (leading dimension R); anything else copied to C order first."""
        if not (x.flags.c_contiguous or x.flags.f_contiguous):
            x = self._xp.ascontiguousarray(x)
        if x.flags.c_contiguous:
            return NO_TRANSPOSE, max(x.shape[1], 1), x
        return TRANSPOSE, max(x.shape[0], 1), x


def _check(status, call):
    if status != 0:
        raise BackendError(f"{call} failed with cuBLAS status {status}")
