"""Elementwise activations and softmax as functional pairs: `f(x) -> (y, cache)` and
`f_backward(cache, grad_y) -> grad_x`. Each cache is the value its derivative is written in.

The backward of ReLU, Tanh and Sigmoid is one elementwise formula of the output y and the
incoming gradient; on CuPy each runs as one fused kernel (the CUDA source beside the portable code).
"""

from ..backends import Elementwise, backend_of, kernel, parallel_range
from ..checks import check_gradient


def relu(x):
    """y = max(x, 0), any shape. Cache: y."""
    backend = backend_of(x)
    compiled = backend.compiled(_relu_flat, size=x.size)
    if compiled is None:
        y = backend.xp.maximum(x, 0)
        return y, y
    y = backend.xp.empty(x.shape, dtype=x.dtype)  # C order: its flat view is itself
    compiled(backend.xp.reshape(x, (-1,)), backend.xp.reshape(y, (-1,)))
    return y, y


@kernel
def _relu_flat(x1, y1):
    """y1 = max(x1, 0) over flat arrays, in parallel (NaN stays NaN, as in xp.maximum)."""
    for i in parallel_range(x1.shape[0]):
        y1[i] = 0 if x1[i] <= 0 else x1[i]


@kernel
def _relu_backward_flat(y1, grad_y1, grad_x1):
    for i in parallel_range(y1.shape[0]):
        grad_x1[i] = grad_y1[i] if y1[i] > 0 else 0


RELU_BACKWARD = Elementwise("T y, T gy", "T gx", "gx = y > 0 ? gy : T(0)", "diynn_relu_backward")


def relu_backward(y, grad_y):
    """dL/dx = grad_y where y > 0, else 0 (dy/dx = 1 for x > 0, else 0)."""
    check_gradient(grad_y, y.shape, y.dtype, "relu_backward")
    backend = backend_of(y)
    xp = backend.xp
    fused = backend.elementwise(RELU_BACKWARD)
    if fused is not None:
        return fused(y, grad_y)
    compiled = backend.compiled(_relu_backward_flat, size=y.size)
    if compiled is not None:
        grad_x = xp.empty(grad_y.shape, dtype=grad_y.dtype)
        compiled(xp.reshape(y, (-1,)), xp.reshape(grad_y, (-1,)), xp.reshape(grad_x, (-1,)))
        return grad_x
    return grad_y * xp.astype(y > 0, grad_y.dtype)


def leaky_relu(x, negative_slope=0.01):
    """y = x if x > 0 else slope x, any shape. Cache: dy/dx (slope where x <= 0, 1 where x > 0)."""
    xp = backend_of(x).xp
    derivative = negative_slope + (1 - negative_slope) * xp.astype(x > 0, x.dtype)
    return x * derivative, derivative


def leaky_relu_backward(derivative, grad_y):
    """dL/dx = grad_y dy/dx."""
    check_gradient(grad_y, derivative.shape, derivative.dtype, "leaky_relu_backward")
    return grad_y * derivative


def tanh(x):
    """y = tanh(x), any shape. Cache: y."""
    y = backend_of(x).xp.tanh(x)
    return y, y


TANH_BACKWARD = Elementwise("T y, T gy", "T gx", "gx = gy * (1 - y * y)", "diynn_tanh_backward")


def tanh_backward(y, grad_y):
    """dL/dx = grad_y (1 - y^2) (dy/dx = 1 - tanh(x)^2)."""
    check_gradient(grad_y, y.shape, y.dtype, "tanh_backward")
    fused = backend_of(y).elementwise(TANH_BACKWARD)
    if fused is not None:
        return fused(y, grad_y)
    return grad_y * (1 - y * y)


def sigmoid(x):
    """y = 1 / (1 + exp(-x)), any shape, written as (1 + tanh(x / 2)) / 2, which never overflows.
    Cache: y."""
    y = backend_of(x).xp.tanh(x / 2)
    y += 1
    y /= 2
    return y, y


SIGMOID_BACKWARD = Elementwise("T y, T gy", "T gx", "gx = gy * y * (1 - y)", "diynn_sigmoid_backward")


def sigmoid_backward(y, grad_y):
    """dL/dx = grad_y y (1 - y) (dy/dx = sigmoid(x) (1 - sigmoid(x)))."""
    check_gradient(grad_y, y.shape, y.dtype, "sigmoid_backward")
    fused = backend_of(y).elementwise(SIGMOID_BACKWARD)
    if fused is not None:
        return fused(y, grad_y)
    return grad_y * y * (1 - y)


def softmax(x, axis=-1):
    """y_i = exp(x_i - max x) / sum_j exp(x_j - max x) along `axis`. Cache: (y, axis)."""
    xp = backend_of(x).xp
    y = xp.exp(x - xp.max(x, axis=axis, keepdims=True))
    y /= xp.sum(y, axis=axis, keepdims=True)
    return y, (y, axis)


def softmax_backward(cache, grad_y):
    # dL/dx_i = y_i (g_i - sum_j g_j y_j)
    y, axis = cache
    check_gradient(grad_y, y.shape, y.dtype, "softmax_backward")
    inner = backend_of(grad_y).xp.sum(grad_y * y, axis=axis, keepdims=True)
    return y * (grad_y - inner)
