"""Elementwise activations and Softmax: thin modules over `diynn.functional.activations`."""

from .. import arguments
from .. import functional as F
from ..module import Module


class ReLU(Module):
    """y = max(x, 0), elementwise: x of any shape -> y of its shape and dtype."""

    def forward(self, x):
        y, cache = F.relu(x)
        self.save_for_backward(cache)
        return y

    def backward(self, grad_output, input_grad=True):
        return F.relu_backward(self.saved_for_backward(), grad_output)


class LeakyReLU(Module):
    """y = x if x > 0 else negative_slope * x, elementwise: x of any shape -> y of its shape and dtype.

    Args:
        negative_slope: the slope for x <= 0, a finite number.
    """

    def __init__(self, negative_slope=0.01):
        super().__init__()
        # bounded so that the slope stays a finite float32
        self.negative_slope = arguments.real("negative_slope", negative_slope, low=-1e30, high=1e30)

    def forward(self, x):
        y, cache = F.leaky_relu(x, self.negative_slope)
        self.save_for_backward(cache)
        return y

    def backward(self, grad_output, input_grad=True):
        return F.leaky_relu_backward(self.saved_for_backward(), grad_output)

    def config(self):
        return {"negative_slope": self.negative_slope}


class Tanh(Module):
    """y = tanh(x), elementwise: x of any shape -> y of its shape and dtype."""

    def forward(self, x):
        y, cache = F.tanh(x)
        self.save_for_backward(cache)
        return y

    def backward(self, grad_output, input_grad=True):
        return F.tanh_backward(self.saved_for_backward(), grad_output)


class Sigmoid(Module):
    """y = 1 / (1 + exp(-x)), elementwise: x of any shape -> y of its shape and dtype.

    Computed without overflow for large |x|.
    """

    def forward(self, x):
        y, cache = F.sigmoid(x)
        self.save_for_backward(cache)
        return y

    def backward(self, grad_output, input_grad=True):
        return F.sigmoid_backward(self.saved_for_backward(), grad_output)


class Softmax(Module):
    """y_i = exp(x_i) / sum_j exp(x_j) along `axis`: x of any shape -> y of its shape and dtype.

    For training a classifier use CrossEntropyLoss on logits instead: it fuses
    log-softmax and the loss and is numerically stable; Softmax is for probabilities.

    Args:
        axis: the axis the probabilities sum to 1 along (default: the last).
    """

    def __init__(self, axis=-1):
        super().__init__()
        self.axis = arguments.integer("axis", axis, minimum=-(2**31))

    def forward(self, x):
        y, cache = F.softmax(x, self.axis)
        self.save_for_backward(cache)
        return y

    def backward(self, grad_output, input_grad=True):
        return F.softmax_backward(self.saved_for_backward(), grad_output)

    def config(self):
        return {"axis": self.axis}


class GELU(Module):
    """y = x Phi(x), Phi the standard normal distribution function, elementwise: x of any shape -> y of
    its shape and dtype.

    Phi(x) = (1 + erf(x / sqrt(2))) / 2 ("none"), or its tanh approximation
    (1 + tanh(sqrt(2 / pi) (x + 0.044715 x^3))) / 2 ("tanh"), as PyTorch's GELU.

    Args:
        approximate: "none" (default) or "tanh".
    """

    def __init__(self, approximate="none"):
        super().__init__()
        self.approximate = arguments.choice("approximate", approximate, F.activations.GELU_FORMS)

    def forward(self, x):
        y, cache = F.gelu(x, self.approximate)
        self.save_for_backward(cache)
        return y

    def backward(self, grad_output, input_grad=True):
        return F.gelu_backward(self.saved_for_backward(), grad_output)

    def config(self):
        return {"approximate": self.approximate}


class SiLU(Module):
    """y = x sigmoid(x) (SiLU, or Swish with beta = 1), elementwise: x of any shape -> y of its shape
    and dtype."""

    def forward(self, x):
        y, cache = F.silu(x)
        self.save_for_backward(cache)
        return y

    def backward(self, grad_output, input_grad=True):
        return F.silu_backward(self.saved_for_backward(), grad_output)
