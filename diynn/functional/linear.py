"""The fully connected layer as a functional pair, and the matrix products the compiled CPU
kernels split over their threads."""

from ..backends import backend_of, blas_gemm, chunk_bounds, kernel, kernel_threads, matmul_into, parallel_range
from ..checks import check_gradient, check_weighted


def linear(x, weight, bias=None):
    """y = x W^T + b. x: (N, in), weight: (out, in), bias: (out,) or None -> y: (N, out).
    Cache: (x, weight, has_bias)."""
    check_weighted("linear", x, weight, bias, ndim=2)
    y = matmul(x, weight.T)
    if bias is not None:
        y += bias
    return y, (x, weight, bias is not None)


def linear_backward(cache, grad_y, input_grad=True, param_grads=True):
    """(dL/dx, dL/dW, dL/db) from dL/dy (N, out); a gradient not asked for (or db without a bias) is None."""
    # dL/dW = g^T x, dL/db = sum_n g, dL/dx = g W
    x, weight, has_bias = cache
    check_gradient(grad_y, (x.shape[0], weight.shape[0]), weight.dtype, "linear_backward")
    grad_weight = matmul_transposed(grad_y, x) if param_grads else None
    grad_bias = backend_of(grad_y).xp.sum(grad_y, axis=0) if param_grads and has_bias else None
    grad_x = matmul(grad_y, weight) if input_grad else None
    return grad_x, grad_weight, grad_bias


def matmul(a, b):
    """a @ b for a: (M, K), b: (K, N); with the compiled kernels, the rows of a split over threads
    (the backend's matmul otherwise: on CuPy, recordable in CUDA graphs)."""
    backend = backend_of(a)
    compiled = backend.compiled(_row_chunks_times)
    if a.ndim != 2 or b.ndim != 2:
        return a @ b
    if compiled is None:
        return backend.matmul(a, b)
    xp = backend.xp
    out = xp.empty((a.shape[0], b.shape[1]), dtype=a.dtype)
    compiled(
        blas_gemm(a.dtype), _contiguous(xp, a), _contiguous(xp, b), chunk_bounds(a.shape[0], kernel_threads()), out
    )
    return out


def matmul_transposed(a, b):
    """a^T @ b for a: (M, K), b: (M, N); with the compiled kernels, the K rows of the result split
    over threads."""
    backend = backend_of(a)
    compiled = backend.compiled(_column_chunks_transposed_times)
    if compiled is None:
        return backend.matmul(a.T, b)
    xp = backend.xp
    out = xp.empty((a.shape[1], b.shape[1]), dtype=a.dtype)
    compiled(
        blas_gemm(a.dtype), _contiguous(xp, a), _contiguous(xp, b), chunk_bounds(a.shape[1], kernel_threads()), out
    )
    return out


def _contiguous(xp, array):
    """`array` as a C-contiguous copy unless it is one, or the transpose of one (NumPy only: the
    compiled path runs on NumPy arrays)."""
    return array if array.flags.c_contiguous or array.flags.f_contiguous else xp.asarray(array, copy=True)


@kernel
def _row_chunks_times(gemm, a, b, bounds, out):
    """out = a @ b, one chunk of a's rows per thread."""
    for t in parallel_range(len(bounds) - 1):
        rows = slice(bounds[t], bounds[t + 1])
        matmul_into(gemm, a[rows], b, out[rows], False)


@kernel
def _column_chunks_transposed_times(gemm, a, b, bounds, out):
    """out = a^T @ b, one chunk of a's columns (out's rows) per thread."""
    for t in parallel_range(len(bounds) - 1):
        rows = slice(bounds[t], bounds[t + 1])
        matmul_into(gemm, a[:, rows].T, b, out[rows], False)
