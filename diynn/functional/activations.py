"""Elementwise activations and softmax as functional pairs: `f(x) -> (y, cache)` and
`f_backward(cache, grad_y) -> grad_x`. Each cache is the value its derivative is written in.

The backward of ReLU, Tanh and Sigmoid is one elementwise formula of the output y and the
incoming gradient; on CuPy each runs as one fused kernel (the CUDA source beside the portable code).
"""

from backends import Elementwise, backend_of


def relu(x):
    """y = max(x, 0), any shape. Cache: y."""
    y = backend_of(x).xp.maximum(x, 0)
    return y, y


RELU_BACKWARD = Elementwise("T y, T gy", "T gx", "gx = y > 0 ? gy : T(0)", "diynn_relu_backward")


def relu_backward(y, grad_y):
    """dL/dx = grad_y where y > 0, else 0 (dy/dx = 1 for x > 0, else 0)."""
    backend = backend_of(y)
    fused = backend.elementwise(RELU_BACKWARD)
    if fused is not None:
        return fused(y, grad_y)
    return grad_y * backend.xp.astype(y > 0, grad_y.dtype)


def leaky_relu(x, negative_slope=0.01):
    """y = x if x > 0 else slope x, any shape. Cache: dy/dx (slope where x <= 0, 1 where x > 0)."""
    xp = backend_of(x).xp
    derivative = negative_slope + (1 - negative_slope) * xp.astype(x > 0, x.dtype)
    return x * derivative, derivative


def leaky_relu_backward(derivative, grad_y):
    """dL/dx = grad_y dy/dx."""
    return grad_y * derivative


def tanh(x):
    """y = tanh(x), any shape. Cache: y."""
    y = backend_of(x).xp.tanh(x)
    return y, y


TANH_BACKWARD = Elementwise("T y, T gy", "T gx", "gx = gy * (1 - y * y)", "diynn_tanh_backward")


def tanh_backward(y, grad_y):
    """dL/dx = grad_y (1 - y^2) (dy/dx = 1 - tanh(x)^2)."""
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
    inner = backend_of(grad_y).xp.sum(grad_y * y, axis=axis, keepdims=True)
    return y * (grad_y - inner)
