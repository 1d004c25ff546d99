"""Matrix products through our own cuBLAS handle (backends/cublas.py), checked without a GPU: the
real CublasProducts calls a stand-in library that does what cuBLAS's ?gemm does, column-major,
on the NumPy arrays behind the raw pointers it is given. The CuPy backend's switch to it while a
CUDA graph records is checked with the CuPy module stood in; on a GPU, test_cuda_graphs.py records
whole training steps with it."""

import ctypes
from types import SimpleNamespace

import numpy as np
import pytest

from diynn.backends import BackendError, cublas, cupy_backend
from diynn.backends.cublas import WORKSPACE_BYTES, CublasProducts


class StandInCublas:
    """cublasCreate_v2, cublasSetStream_v2, cublasSetWorkspace_v2 and cublas{S,D}gemm_v2 on host memory."""

    def __init__(self):
        self.calls = []
        self.cublasSgemm_v2 = lambda *arguments: self._gemm(ctypes.c_float, *arguments)
        self.cublasDgemm_v2 = lambda *arguments: self._gemm(ctypes.c_double, *arguments)

    def cublasCreate_v2(self, handle):
        handle._obj.value = 42
        return 0

    def cublasSetWorkspace_v2(self, handle, address, size):
        self.calls.append(("workspace", handle.value, size))
        return 0

    def cublasSetStream_v2(self, handle, stream):
        self.calls.append(("stream", handle.value, stream.value))
        return 0

    def _gemm(self, real, handle, transa, transb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc):
        """C (m, n) = alpha op(A) op(B) + beta C, every matrix column-major with its leading dimension."""

        def matrix(address, leading, rows, columns):
            size = np.dtype(real).itemsize
            flat = np.ctypeslib.as_array(
                ctypes.cast(address.value, ctypes.POINTER(real)), (leading * (columns - 1) + rows,)
            )
            return np.lib.stride_tricks.as_strided(flat, (rows, columns), (size, leading * size))

        op_a = matrix(a, lda, m, k) if transa == 0 else matrix(a, lda, k, m).T
        op_b = matrix(b, ldb, k, n) if transb == 0 else matrix(b, ldb, n, k).T
        assert lda >= (m if transa == 0 else k) and ldb >= (k if transb == 0 else n) and ldc >= m
        assert beta._obj.value == 0  # C need not hold numbers
        matrix(c, ldc, m, n)[...] = alpha._obj.value * (op_a @ op_b)
        self.calls.append(("gemm", handle.value, real.__name__))
        return 0


def _products(library, stream=lambda: 7):
    return CublasProducts(library, np, pointer=lambda array: array.ctypes.data, current_stream=stream)


LAYOUTS = {
    "C": lambda x: np.ascontiguousarray(x),
    "F (a transposed view)": lambda x: np.asfortranarray(x),
    "strided": lambda x: np.repeat(x, 2, axis=1)[:, ::2],
}


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("layout_a", list(LAYOUTS))
@pytest.mark.parametrize("layout_b", list(LAYOUTS))
def test_a_column_major_gemm_gives_the_row_major_product(dtype, layout_a, layout_b):
    rng = np.random.default_rng(0)
    a = LAYOUTS[layout_a](rng.normal(size=(5, 3)).astype(dtype))
    b = LAYOUTS[layout_b](rng.normal(size=(3, 4)).astype(dtype))
    library = StandInCublas()
    out = _products(library).matmul(a, b)
    assert out.flags.c_contiguous and out.dtype == dtype
    np.testing.assert_allclose(out, a @ b, rtol=1e-6 if dtype == "float32" else 1e-12)
    assert library.calls[-1] == ("gemm", 42, "c_float" if dtype == "float32" else "c_double")


def test_the_handle_gets_a_fixed_workspace_and_follows_the_stream():
    library, streams = StandInCublas(), iter([3, 3, 9])
    products = _products(library, stream=lambda: next(streams))
    a = np.ones((2, 2), np.float32)
    for _ in range(3):
        products.matmul(a, a)
    assert library.calls == [
        ("workspace", 42, WORKSPACE_BYTES),
        ("stream", 42, 3),
        ("gemm", 42, "c_float"),
        ("gemm", 42, "c_float"),
        ("stream", 42, 9),
        ("gemm", 42, "c_float"),
    ]


def test_operands_that_do_not_fit_are_a_clear_error_and_empty_products_are_zeros():
    products = _products(StandInCublas())
    with pytest.raises(BackendError, match=r"\(2, 3\) float32 and \(2, 3\) float32"):
        products.matmul(np.ones((2, 3), np.float32), np.ones((2, 3), np.float32))
    with pytest.raises(BackendError, match="float64"):
        products.matmul(np.ones((2, 3), np.float32), np.ones((3, 2), np.float64))
    assert products.matmul(np.ones((2, 0), np.float32), np.ones((0, 3), np.float32)).tolist() == [[0.0] * 3] * 2


def test_the_cupy_backend_multiplies_through_its_own_handle_only_while_recording(monkeypatch):
    library = StandInCublas()
    monkeypatch.setattr(cublas, "load_cublas", lambda: library)
    monkeypatch.setattr(cupy_backend, "device_pointer", lambda array: array.ctypes.data)
    backend = object.__new__(cupy_backend.CupyBackend)  # no CuPy here: its few attributes stood in
    backend.xp, backend._cublas, backend._recording = np, None, False
    cuda = SimpleNamespace(get_current_stream=lambda: SimpleNamespace(ptr=5), device=SimpleNamespace())
    cuda.device.get_cublas_handle = lambda: library.calls.append(("CuPy's own handle",))
    backend._cupy = SimpleNamespace(cuda=cuda)
    a, b = np.arange(6.0).reshape(2, 3), np.arange(12.0).reshape(3, 4)
    np.testing.assert_array_equal(backend.matmul(a, b), a @ b)
    assert library.calls == []
    with backend._products_while_recording():
        np.testing.assert_array_equal(backend.matmul(a, b), a @ b)
    assert [call[0] for call in library.calls] == ["CuPy's own handle", "workspace", "stream", "gemm"]
    backend.matmul(a, b)
    assert len(library.calls) == 4  # eager again: CuPy's own product
