"""Elementwise activations and softmax as functional pairs: `f(x) -> (y, cache)` and
`f_backward(cache, grad_y) -> grad_x`. Each cache is the value its derivative is written in.

The backward of ReLU, Tanh and Sigmoid is one elementwise formula of the output y and the
incoming gradient; on CuPy each runs as one fused kernel (the CUDA source beside the portable code),
and ReLU runs as compiled loops on the CPU: each family (RELU, TANH, SIGMOID) chooses with one
selection (selection.py).
"""

from ..backends import Elementwise, backend_of, kernel, parallel_range
from ..checks import check_gradient
from .selection import Family, Implementation, compiles, fuses, select_elementwise, select_fused


def relu(x):
    """y = max(x, 0), elementwise.

    Args:
        x: any shape, floating point.

    Returns:
        (y, cache): y of x's shape and dtype; the cache for `relu_backward`, y itself.
    """
    backend = backend_of(x)
    return RELU.choose(backend, x.size).run(backend, x)


def relu_backward(y, grad_y):
    """The gradient of `relu`: dL/dx = dL/dy where y > 0, else 0 (dy/dx = 1 for x > 0, else 0).

    Args:
        y: the cache `relu` returned, its output.
        grad_y: dL/dy, of y's shape and dtype.

    Returns:
        grad_x: dL/dx, of y's shape and dtype.
    """
    check_gradient(grad_y, y.shape, y.dtype, "relu_backward")
    backend = backend_of(y)
    return RELU.choose(backend, y.size).backward(backend, y, grad_y)


def _relu_portable(backend, x):
    y = backend.xp.maximum(x, 0)
    return y, y


def _relu_backward_portable(backend, y, grad_y):
    return grad_y * backend.xp.astype(y > 0, grad_y.dtype)


RELU_BACKWARD = Elementwise("T y, T gy", "T gx", "gx = y > 0 ? gy : T(0)", "diynn_relu_backward")


def _relu_backward_fused(backend, y, grad_y):
    return backend.elementwise(RELU_BACKWARD)(y, grad_y)


def _relu_compiled(backend, x):
    y = backend.xp.empty(x.shape, dtype=x.dtype)  # C order: its flat view is itself
    backend.compiled(_relu_flat)(backend.xp.reshape(x, (-1,)), backend.xp.reshape(y, (-1,)))
    return y, y


def _relu_backward_compiled(backend, y, grad_y):
    xp = backend.xp
    grad_x = xp.empty(grad_y.shape, dtype=grad_y.dtype)
    backend.compiled(_relu_backward_flat)(xp.reshape(y, (-1,)), xp.reshape(grad_y, (-1,)), xp.reshape(grad_x, (-1,)))
    return grad_x


@kernel
def _relu_flat(x1, y1):
    """y1 = max(x1, 0) over flat arrays, in parallel (NaN stays NaN, as in xp.maximum)."""
    for i in parallel_range(x1.shape[0]):
        y1[i] = 0 if x1[i] <= 0 else x1[i]


@kernel
def _relu_backward_flat(y1, grad_y1, grad_x1):
    for i in parallel_range(y1.shape[0]):
        grad_x1[i] = grad_y1[i] if y1[i] > 0 else 0


# the cache is y itself (no cache type per implementation): the backward selects again from the
# same facts (backend, size), which gives the forward's implementation
RELU = Family(
    "relu",
    select_elementwise,
    {
        "fused": Implementation(_relu_portable, _relu_backward_fused, serves=fuses),
        "compiled": Implementation(_relu_compiled, _relu_backward_compiled, serves=compiles),
        "portable": Implementation(_relu_portable, _relu_backward_portable),
    },
)


def leaky_relu(x, negative_slope=0.01):
    """y = x if x > 0 else negative_slope x, elementwise.

    Args:
        x: any shape, floating point.
        negative_slope: the slope for x <= 0.

    Returns:
        (y, cache): y of x's shape and dtype; the cache for `leaky_relu_backward`, dy/dx
            (negative_slope where x <= 0, 1 where x > 0).
    """
    xp = backend_of(x).xp
    derivative = negative_slope + (1 - negative_slope) * xp.astype(x > 0, x.dtype)
    return x * derivative, derivative


def leaky_relu_backward(derivative, grad_y):
    """The gradient of `leaky_relu`: dL/dx = dL/dy dy/dx.

    Args:
        derivative: the cache `leaky_relu` returned, dy/dx.
        grad_y: dL/dy, of y's shape and dtype.

    Returns:
        grad_x: dL/dx, of x's shape and dtype.
    """
    check_gradient(grad_y, derivative.shape, derivative.dtype, "leaky_relu_backward")
    return grad_y * derivative


def tanh(x):
    """y = tanh(x), elementwise.

    Args:
        x: any shape, floating point.

    Returns:
        (y, cache): y of x's shape and dtype; the cache for `tanh_backward`, y itself.
    """
    backend = backend_of(x)
    return TANH.choose(backend, x.size).run(backend, x)


def _tanh_portable(backend, x):
    y = backend.xp.tanh(x)
    return y, y


TANH_BACKWARD = Elementwise("T y, T gy", "T gx", "gx = gy * (1 - y * y)", "diynn_tanh_backward")


def tanh_backward(y, grad_y):
    """The gradient of `tanh`: dL/dx = dL/dy (1 - y^2) (dy/dx = 1 - tanh(x)^2).

    Args:
        y: the cache `tanh` returned, its output.
        grad_y: dL/dy, of y's shape and dtype.

    Returns:
        grad_x: dL/dx, of y's shape and dtype.
    """
    check_gradient(grad_y, y.shape, y.dtype, "tanh_backward")
    backend = backend_of(y)
    return TANH.choose(backend, y.size).backward(backend, y, grad_y)


def _tanh_backward_portable(backend, y, grad_y):
    return grad_y * (1 - y * y)


def _tanh_backward_fused(backend, y, grad_y):
    return backend.elementwise(TANH_BACKWARD)(y, grad_y)


def sigmoid(x):
    """y = 1 / (1 + exp(-x)), elementwise, computed as (1 + tanh(x / 2)) / 2, which never overflows.

    Args:
        x: any shape, floating point.

    Returns:
        (y, cache): y of x's shape and dtype; the cache for `sigmoid_backward`, y itself.
    """
    backend = backend_of(x)
    return SIGMOID.choose(backend, x.size).run(backend, x)


def _sigmoid_portable(backend, x):
    y = backend.xp.tanh(x / 2)  # (1 + tanh(x / 2)) / 2: never overflows
    y += 1
    y /= 2
    return y, y


SIGMOID_BACKWARD = Elementwise("T y, T gy", "T gx", "gx = gy * y * (1 - y)", "diynn_sigmoid_backward")


def sigmoid_backward(y, grad_y):
    """The gradient of `sigmoid`: dL/dx = dL/dy y (1 - y) (dy/dx = sigmoid(x) (1 - sigmoid(x))).

    Args:
        y: the cache `sigmoid` returned, its output.
        grad_y: dL/dy, of y's shape and dtype.

    Returns:
        grad_x: dL/dx, of y's shape and dtype.
    """
    check_gradient(grad_y, y.shape, y.dtype, "sigmoid_backward")
    backend = backend_of(y)
    return SIGMOID.choose(backend, y.size).backward(backend, y, grad_y)


def _sigmoid_backward_portable(backend, y, grad_y):
    return grad_y * y * (1 - y)


def _sigmoid_backward_fused(backend, y, grad_y):
    return backend.elementwise(SIGMOID_BACKWARD)(y, grad_y)


TANH = Family(
    "tanh",
    select_fused,
    {
        "fused": Implementation(_tanh_portable, _tanh_backward_fused, serves=fuses),
        "portable": Implementation(_tanh_portable, _tanh_backward_portable),
    },
)
SIGMOID = Family(
    "sigmoid",
    select_fused,
    {
        "fused": Implementation(_sigmoid_portable, _sigmoid_backward_fused, serves=fuses),
        "portable": Implementation(_sigmoid_portable, _sigmoid_backward_portable),
    },
)


def softmax(x, axis=-1):
    """y_i = exp(x_i - max x) / sum_j exp(x_j - max x) along `axis` (the shift keeps exp from overflowing).

    Args:
        x: any shape, floating point.
        axis: the axis the probabilities sum to 1 along (default: the last).

    Returns:
        (y, cache): y of x's shape and dtype; the cache for `softmax_backward`, (y, axis).
    """
    xp = backend_of(x).xp
    y = xp.exp(x - xp.max(x, axis=axis, keepdims=True))
    y /= xp.sum(y, axis=axis, keepdims=True)
    return y, (y, axis)


def softmax_backward(cache, grad_y):
    """The gradient of `softmax`: the vector-Jacobian product along its axis.

    Args:
        cache: the cache `softmax` returned, (y, axis).
        grad_y: dL/dy, of y's shape and dtype.

    Returns:
        grad_x: dL/dx, of y's shape and dtype.
    """
    # dL/dx_i = y_i (g_i - sum_j g_j y_j)
    y, axis = cache
    check_gradient(grad_y, y.shape, y.dtype, "softmax_backward")
    inner = backend_of(grad_y).xp.sum(grad_y * y, axis=axis, keepdims=True)
    return y * (grad_y - inner)
