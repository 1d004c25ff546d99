"""Elementwise activations and Softmax; each caches the value its derivative is written in."""

from backends import get_backend

from ..module import Module


class ReLU(Module):
    """y = max(x, 0), any shape."""

    def forward(self, x):
        self.y = get_backend().xp.maximum(x, 0)
        return self.y

    def backward(self, grad_output, input_grad=True):
        # dy/dx = 1 where x > 0, else 0
        return get_backend().relu_backward(self.y, grad_output)


class LeakyReLU(Module):
    """y = x if x > 0 else slope * x, any shape."""

    def __init__(self, negative_slope=0.01):
        super().__init__()
        self.negative_slope = negative_slope

    def forward(self, x):
        xp = get_backend().xp
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
        self.y = get_backend().xp.tanh(x)
        return self.y

    def backward(self, grad_output, input_grad=True):
        # dy/dx = 1 - y^2
        return get_backend().tanh_backward(self.y, grad_output)


class Sigmoid(Module):
    """y = 1 / (1 + exp(-x)), any shape; computed without overflow for large |x|."""

    def forward(self, x):
        self.y = sigmoid(x)
        return self.y

    def backward(self, grad_output, input_grad=True):
        # dy/dx = y (1 - y)
        return get_backend().sigmoid_backward(self.y, grad_output)


class Softmax(Module):
    """y_i = exp(x_i) / sum_j exp(x_j) along `axis` (default: the last).

    For training a classifier use CrossEntropyLoss on logits instead: it fuses
    log-softmax and the loss and is numerically stable; Softmax is for probabilities.
    """

    def __init__(self, axis=-1):
        super().__init__()
        self.axis = axis

    def forward(self, x):
        self.y = softmax(x, self.axis)
        return self.y

    def backward(self, grad_output, input_grad=True):
        # dL/dx_i = y_i (g_i - sum_j g_j y_j)
        xp = get_backend().xp
        inner = xp.sum(grad_output * self.y, axis=self.axis, keepdims=True)
        return self.y * (grad_output - inner)

    def config(self):
        return {"axis": self.axis}


def sigmoid(x):
    """1 / (1 + exp(-x)) written as (1 + tanh(x / 2)) / 2, which never overflows."""
    xp = get_backend().xp
    y = xp.tanh(x / 2)
    y += 1
    y /= 2
    return y


def softmax(x, axis=-1):
    """exp(x - max x) normalised along `axis`."""
    xp = get_backend().xp
    e = xp.exp(x - xp.max(x, axis=axis, keepdims=True))
    e /= xp.sum(e, axis=axis, keepdims=True)
    return e
