"""Elementwise activations and Softmax; each caches the value its derivative is written in.

The backward of ReLU, Tanh and Sigmoid is one elementwise formula of the cached output y and the
incoming gradient; on CuPy each runs as one fused kernel (the source beside the portable code).
"""

from backends import Elementwise, backend_of

from .. import arguments
from ..module import Module


class ReLU(Module):
    """y = max(x, 0), any shape."""

    def forward(self, x):
        self.y = backend_of(x).xp.maximum(x, 0)
        return self.y

    def backward(self, grad_output, input_grad=True):
        return relu_backward(self.y, grad_output)


RELU_BACKWARD = Elementwise("T y, T gy", "T gx", "gx = y > 0 ? gy : T(0)", "diynn_relu_backward")


def relu_backward(y, grad_output):
    """dL/dx = grad_output where y > 0, else 0 (dy/dx = 1 for x > 0, else 0)."""
    backend = backend_of(y)
    fused = backend.elementwise(RELU_BACKWARD)
    if fused is not None:
        return fused(y, grad_output)
    return grad_output * backend.xp.astype(y > 0, grad_output.dtype)


class LeakyReLU(Module):
    """y = x if x > 0 else slope * x, any shape."""

    def __init__(self, negative_slope=0.01):
        super().__init__()
        # bounded so that the slope stays a finite float32
        self.negative_slope = arguments.real("negative_slope", negative_slope, low=-1e30, high=1e30)

    def forward(self, x):
        xp = backend_of(x).xp
        # slope where x <= 0, 1 where x > 0: y = x * dy/dx
        self.derivative = self.negative_slope + (1 - self.negative_slope) * xp.astype(x > 0, x.dtype)
        return x * self.derivative

    def backward(self, grad_output, input_grad=True):
        return grad_output * self.derivative

    def config(self):
        return {"negative_slope": self.negative_slope}


class Tanh(Module):
    """y = tanh(x), any shape."""

    def forward(self, x):
        self.y = backend_of(x).xp.tanh(x)
        return self.y

    def backward(self, grad_output, input_grad=True):
        return tanh_backward(self.y, grad_output)


TANH_BACKWARD = Elementwise("T y, T gy", "T gx", "gx = gy * (1 - y * y)", "diynn_tanh_backward")


def tanh_backward(y, grad_output):
    """dL/dx = grad_output (1 - y^2) (dy/dx = 1 - tanh(x)^2)."""
    fused = backend_of(y).elementwise(TANH_BACKWARD)
    if fused is not None:
        return fused(y, grad_output)
    return grad_output * (1 - y * y)


class Sigmoid(Module):
    """y = 1 / (1 + exp(-x)), any shape; computed without overflow for large |x|."""

    def forward(self, x):
        self.y = sigmoid(x)
        return self.y

    def backward(self, grad_output, input_grad=True):
        return sigmoid_backward(self.y, grad_output)


SIGMOID_BACKWARD = Elementwise("T y, T gy", "T gx", "gx = gy * y * (1 - y)", "diynn_sigmoid_backward")


def sigmoid(x):
    """1 / (1 + exp(-x)) written as (1 + tanh(x / 2)) / 2, which never overflows."""
    y = backend_of(x).xp.tanh(x / 2)
    y += 1
    y /= 2
    return y


def sigmoid_backward(y, grad_output):
    """dL/dx = grad_output y (1 - y) (dy/dx = sigmoid(x) (1 - sigmoid(x)))."""
    fused = backend_of(y).elementwise(SIGMOID_BACKWARD)
    if fused is not None:
        return fused(y, grad_output)
    return grad_output * y * (1 - y)


class Softmax(Module):
    """y_i = exp(x_i) / sum_j exp(x_j) along `axis` (default: the last).

    For training a classifier use CrossEntropyLoss on logits instead: it fuses
    log-softmax and the loss and is numerically stable; Softmax is for probabilities.
    """

    def __init__(self, axis=-1):
        super().__init__()
        self.axis = arguments.integer("axis", axis, minimum=-(2**31))

    def forward(self, x):
        self.y = softmax(x, self.axis)
        return self.y

    def backward(self, grad_output, input_grad=True):
        # dL/dx_i = y_i (g_i - sum_j g_j y_j)
        xp = backend_of(grad_output).xp
        inner = xp.sum(grad_output * self.y, axis=self.axis, keepdims=True)
        return self.y * (grad_output - inner)

    def config(self):
        return {"axis": self.axis}


def softmax(x, axis=-1):
    """exp(x - max x) normalised along `axis`."""
    xp = backend_of(x).xp
    e = xp.exp(x - xp.max(x, axis=axis, keepdims=True))
    e /= xp.sum(e, axis=axis, keepdims=True)
    return e
