"""Fully connected layer."""

from .. import arguments
from .. import functional as F
from ..backends import get_backend
from ..checks import check_input
from ..init import INITS, as_generator, initial_weight
from ..module import Module, Parameter


class Linear(Module):
    """y = x W^T + b, the fully connected layer.

    Shapes: x (N, in_features) -> y (N, out_features), or x (N, ..., in_features) -> y (N, ...,
    out_features) (each position along the middle axes a row), both of the parameters' dtype
    (float32 by default). W (`weight`): (out_features, in_features) as in PyTorch; b (`bias`):
    (out_features,).

    Args:
        in_features: the input's features.
        out_features: the output's features.
        bias: whether to add a learned bias b (initialised to zeros).
        init: the weight's initialisation, "kaiming" (default, for ReLU) or "xavier" (for tanh/sigmoid).
        rng: seed or Generator for the initial weight.
        dtype: the parameters' dtype (default float32).
    """

    def __init__(self, in_features, out_features, bias=True, init="kaiming", rng=None, dtype=None):
        super().__init__()
        xp = get_backend().xp
        dtype = xp.float32 if dtype is None else dtype
        in_features, out_features = (
            arguments.integer("in_features", in_features),
            arguments.integer("out_features", out_features),
        )
        self.in_features, self.out_features, self.init = (
            in_features,
            out_features,
            arguments.choice("init", init, INITS),
        )
        shape = (out_features, in_features)
        weight = initial_weight(shape, in_features, out_features, init, as_generator(rng), dtype)
        self.weight = Parameter(weight)
        self.bias = Parameter(xp.zeros(out_features, dtype=dtype)) if bias else None

    def forward(self, x):
        ndim = getattr(x, "ndim", 2)
        if ndim < 2:
            raise ValueError(f"Linear expects an input with at least 2 axes (N, ..., in), got shape {tuple(x.shape)}")
        check_input(x, ndim=ndim, name="Linear", sizes={ndim - 1: self.in_features}, like=self.weight.data)
        y, cache = F.linear(x, self.weight.data, None if self.bias is None else self.bias.data)
        self.save_for_backward(cache)
        return y

    def backward(self, grad_output, input_grad=True):
        grad_x, grad_weight, grad_bias = F.linear_backward(
            self.saved_for_backward(), grad_output, input_grad, self.wants_parameter_grads()
        )
        self.accumulate_grads(weight=grad_weight, bias=grad_bias)
        return grad_x

    @classmethod
    def stored_size(cls, config):
        rows, columns = (
            arguments.integer("out_features", config["out_features"]),
            arguments.integer("in_features", config["in_features"]),
        )
        return rows * columns + (rows if config.get("bias", True) else 0)

    def config(self):
        return {
            "in_features": self.in_features,
            "out_features": self.out_features,
            "bias": self.bias is not None,
            "init": self.init,
        }
