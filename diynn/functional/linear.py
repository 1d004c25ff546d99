"""The fully connected layer as a functional pair: the compiled CPU kernels' products split over
their threads, or the backend's matmul, behind one selection (LINEAR)."""

from typing import NamedTuple

from ..backends import backend_of, blas_gemm, chunk_bounds, empty, kernel, kernel_threads, matmul_into, parallel_range
from ..checks import check_gradient, check_input, check_weighted
from .selection import Family, Implementation, compiles

# Below this many multiply-adds (N * in * out: the forward's, and each backward product's) a product
# split over threads costs more than BLAS on one: the launch takes ~5 us, and at 2**20 the split and
# the single product ran level on 2 cores (64x256x128: 0.91 of the single product's time; 256x128x10: 1.15).
SMALLEST_SPLIT_PRODUCT = 2**20


class LinearCache(NamedTuple):
    """What the backward needs: the input x (N, in) (an input with more axes, (N, ..., in), as
    rows), the weight (out, in), whether there was a bias, and such an input's shape (else None)."""

    x: object
    weight: object
    has_bias: bool
    shape: tuple | None = None


class CompiledLinearCache(LinearCache):
    """The compiled path's cache: the same values, for the compiled products."""


def linear(x, weight, bias=None):
    """y = x W^T + b, the fully connected layer.

    Args:
        x: (N, in) input, or (N, ..., in) (each position along the middle axes a row), of the
            weight's dtype.
        weight: W (out, in), as in PyTorch.
        bias: b (out,) or None.

    Returns:
        (y, cache): y (N, out), or (N, ..., out), of x's dtype; the cache for `linear_backward`, of
            the type of the implementation LINEAR chose.

    Raises:
        ValueError: shapes that do not fit together.
        TypeError: operands of different backends or dtypes.
    """
    if getattr(x, "ndim", 2) > 2:
        return _linear_rows(x, weight, bias)
    check_weighted("linear", x, weight, bias, ndim=2)
    backend = backend_of(x)
    return LINEAR.choose(backend, x.shape[0] * weight.shape[0] * weight.shape[1]).run(backend, x, weight, bias)


def linear_backward(cache, grad_y, input_grad=True, param_grads=True):
    """The gradients of `linear`.

    Args:
        cache: the cache `linear` returned.
        grad_y: dL/dy (N, out), or (N, ..., out) as y, of the weight's dtype.
        input_grad: False skips dL/dx.
        param_grads: False skips dL/dW and dL/db.

    Returns:
        (grad_x, grad_weight, grad_bias): dL/dx of x's shape, dL/dW (out, in) and dL/db (out,); None
            for those not asked for (dL/db also without a bias).
    """
    # dL/dW = g^T x, dL/db = sum_n g, dL/dx = g W (the sums over every row, the middle axes' too)
    backward = LINEAR.backward_of(cache)
    if cache.shape is not None:
        return _linear_backward_rows(backward, cache, grad_y, input_grad, param_grads)
    check_gradient(grad_y, (cache.x.shape[0], cache.weight.shape[0]), cache.weight.dtype, "linear_backward")
    return backward(backend_of(grad_y), cache, grad_y, input_grad, param_grads)


def _linear_rows(x, weight, bias):
    """`linear` of x (N, ..., in) as the rows of x (N ..., in): a view where x is contiguous."""
    check_input(weight, ndim=2, name="linear's weight")
    check_input(x, ndim=x.ndim, name="linear", sizes={x.ndim - 1: weight.shape[1]}, like=weight)
    xp = backend_of(x).xp
    y, cache = linear(xp.reshape(x, (-1, x.shape[-1])), weight, bias)
    return xp.reshape(y, (*x.shape[:-1], weight.shape[0])), cache._replace(shape=tuple(x.shape))


def _linear_backward_rows(backward, cache, grad_y, input_grad, param_grads):
    shape, out = cache.shape, cache.weight.shape[0]
    check_gradient(grad_y, (*shape[:-1], out), cache.weight.dtype, "linear_backward")
    backend = backend_of(grad_y)
    grad_x, grad_weight, grad_bias = backward(
        backend, cache, backend.xp.reshape(grad_y, (-1, out)), input_grad, param_grads
    )
    return (None if grad_x is None else backend.xp.reshape(grad_x, shape)), grad_weight, grad_bias


def select_linear(backend, multiply_adds: int) -> str:
    """From (backend, N * in * out): the compiled products (split over the kernels' threads along
    the output's longer side) where they are on, have threads to split over and a product large
    enough to pay for the split, else the backend's matmul (one product in NumPy's BLAS, which the
    compiled kernels hold at one thread; on CuPy, recordable in CUDA graphs)."""
    if backend.compiles_kernels and multiply_adds >= SMALLEST_SPLIT_PRODUCT and kernel_threads() > 1:
        return "compiled"
    return "portable"


def _linear_portable(backend, x, weight, bias):
    y = backend.matmul(x, weight.T)
    if bias is not None:
        y += bias
    return y, LinearCache(x, weight, bias is not None)


def _linear_backward_portable(backend, cache, grad_y, input_grad, param_grads):
    x, weight, has_bias, _ = cache
    grad_weight = backend.matmul(grad_y.T, x) if param_grads else None
    grad_bias = backend.xp.sum(grad_y, axis=0) if param_grads and has_bias else None
    grad_x = backend.matmul(grad_y, weight) if input_grad else None
    return grad_x, grad_weight, grad_bias


def _linear_compiled(backend, x, weight, bias):
    y = _split_times(backend, x, weight.T)
    if bias is not None:
        y += bias
    return y, CompiledLinearCache(x, weight, bias is not None)


def _linear_backward_compiled(backend, cache, grad_y, input_grad, param_grads):
    x, weight, has_bias, _ = cache
    grad_weight = _transposed_times(backend, grad_y, x) if param_grads else None
    grad_bias = grad_y.sum(axis=0) if param_grads and has_bias else None  # NumPy's own: 1.2 us less than xp.sum
    grad_x = _split_times(backend, grad_y, weight) if input_grad else None
    return grad_x, grad_weight, grad_bias


def _split_times(backend, a, b):
    """a @ b for a: (M, K), b: (K, N), split over the kernels' threads along the output's longer
    side, so that each thread reads a share of the larger operand: b's columns where N >= M (a
    layer's weight at a small batch: 64x784 @ 784x256 took 179 us split by columns, 229 by rows,
    on 2 cores), else a's rows."""
    xp = backend.xp
    m, n = a.shape[0], b.shape[1]
    out = empty((m, n), a.dtype)
    by_columns = n >= m
    bounds = chunk_bounds(n if by_columns else m, kernel_threads())
    chunks = _column_chunks_times if by_columns else _row_chunks_times
    backend.compiled(chunks)(blas_gemm(a.dtype), _contiguous(xp, a), _contiguous(xp, b), bounds, out)
    return out


def _transposed_times(backend, a, b):
    """a^T @ b for a: (M, K), b: (M, N), the K rows of the result split over the kernels' threads."""
    xp = backend.xp
    out = empty((a.shape[1], b.shape[1]), a.dtype)
    bounds = chunk_bounds(a.shape[1], kernel_threads())
    compiled = backend.compiled(_column_chunks_transposed_times)
    compiled(blas_gemm(a.dtype), _contiguous(xp, a), _contiguous(xp, b), bounds, out)
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
def _column_chunks_times(gemm, a, b, bounds, out):
    """out = a @ b, one chunk of b's columns (out's columns) per thread."""
    for t in parallel_range(len(bounds) - 1):
        columns = slice(bounds[t], bounds[t + 1])
        matmul_into(gemm, a, b[:, columns], out[:, columns], False)


@kernel
def _column_chunks_transposed_times(gemm, a, b, bounds, out):
    """out = a^T @ b, one chunk of a's columns (out's rows) per thread."""
    for t in parallel_range(len(bounds) - 1):
        rows = slice(bounds[t], bounds[t + 1])
        matmul_into(gemm, a[:, rows].T, b, out[rows], False)


LINEAR = Family(
    "linear",
    select_linear,
    {
        "compiled": Implementation(_linear_compiled, _linear_backward_compiled, CompiledLinearCache, compiles),
        "portable": Implementation(_linear_portable, _linear_backward_portable, LinearCache),
    },
)
