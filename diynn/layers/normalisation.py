"""Batch normalisation with running statistics for evaluation, and layer normalisation: thin modules
over `diynn.functional.batch_norm` and `diynn.functional.layer_norm`."""

from __future__ import annotations

from .. import arguments
from .. import functional as F
from ..backends import get_backend
from ..checks import check_input
from ..module import Module, Parameter


class _BatchNorm(Module):
    """y = gamma (x - mean) / sqrt(var + eps) + beta, per feature/channel (axis 1).

    Training: batch statistics (biased variance), and running_mean / running_var updated as
    (1 - momentum) running + momentum batch (unbiased variance, as in PyTorch). Eval: running ones.
    """

    ndims: tuple[int, ...]

    def __init__(self, num_features, eps=1e-5, momentum=0.1, dtype=None):
        super().__init__()
        xp = get_backend().xp
        dtype = xp.float32 if dtype is None else dtype
        self.num_features = arguments.integer("num_features", num_features)
        self.eps = arguments.real("eps", eps, low=0, low_open=True)
        self.momentum = arguments.real("momentum", momentum, low=0, high=1)
        self.weight = Parameter(xp.ones(num_features, dtype=dtype))
        self.bias = Parameter(xp.zeros(num_features, dtype=dtype))
        self.register_buffer("running_mean", xp.zeros(num_features, dtype=dtype))
        self.register_buffer("running_var", xp.ones(num_features, dtype=dtype))

    def forward(self, x):
        name = type(self).__name__
        if getattr(x, "ndim", None) not in self.ndims:
            shape = tuple(x.shape) if hasattr(x, "shape") else type(x).__name__
            raise ValueError(f"{name} expects an input with {' or '.join(map(str, self.ndims))} axes, got {shape}")
        check_input(x, ndim=x.ndim, name=name, sizes={1: self.num_features}, like=self.weight.data)
        y, cache = F.batch_norm(
            x,
            self.weight.data,
            self.bias.data,
            self.running_mean,
            self.running_var,
            self.training,
            self.momentum,
            self.eps,
        )
        self.save_for_backward(cache)
        return y

    def backward(self, grad_output, input_grad=True):
        grad_x, grad_weight, grad_bias = F.batch_norm_backward(self.saved_for_backward(), grad_output, input_grad)
        self.accumulate_grads(weight=grad_weight, bias=grad_bias)
        return grad_x

    @classmethod
    def stored_size(cls, config):
        return 4 * arguments.integer("num_features", config["num_features"])  # weight, bias, running mean and var

    def config(self):
        return {"num_features": self.num_features, "eps": self.eps, "momentum": self.momentum}


class BatchNorm1d(_BatchNorm):
    """Batch normalisation of (N, C) or (N, C, L) inputs, statistics per channel C.

    y = gamma (x - mean) / sqrt(var + eps) + beta. Training: the batch's statistics (biased
    variance), and running_mean / running_var updated as (1 - momentum) running + momentum batch
    (unbiased variance, as in PyTorch). Eval: the running ones.

    Shapes: x (N, C) or (N, C, L) of the parameters' dtype -> y of x's shape; gamma (`weight`), beta
    (`bias`), running_mean and running_var (C,).

    Args:
        num_features: C.
        eps: added to the variance, > 0.
        momentum: the batch's weight in the running statistics' update, in [0, 1].
        dtype: the parameters' and buffers' dtype (default float32).
    """

    ndims = (2, 3)


class BatchNorm2d(_BatchNorm):
    """Batch normalisation of (N, C, H, W) images, statistics per channel C (over N, H and W).

    y = gamma (x - mean) / sqrt(var + eps) + beta. Training: the batch's statistics (biased
    variance), and running_mean / running_var updated as (1 - momentum) running + momentum batch
    (unbiased variance, as in PyTorch). Eval: the running ones.

    Shapes: x (N, C, H, W) of the parameters' dtype -> y of x's shape; gamma (`weight`), beta
    (`bias`), running_mean and running_var (C,).

    Args:
        num_features: C.
        eps: added to the variance, > 0.
        momentum: the batch's weight in the running statistics' update, in [0, 1].
        dtype: the parameters' and buffers' dtype (default float32).
    """

    ndims = (4,)


class LayerNorm(Module):
    """Layer normalisation over the last len(normalized_shape) axes, with each sample's own statistics.

    y = gamma (x - mean) / sqrt(var + eps) + beta, the mean and the (biased) variance taken over the
    normalised axes of each position (in training and evaluation alike: no running statistics), as
    PyTorch's LayerNorm.

    Shapes: x (..., *normalized_shape) of the parameters' dtype -> y of x's shape; gamma (`weight`,
    ones) and beta (`bias`, zeros) of normalized_shape.

    Args:
        normalized_shape: the trailing axes' shape, an int (the last axis) or a tuple.
        eps: added to the variance, > 0.
        elementwise_affine: whether to learn gamma (and beta, with `bias`); False: y = x_hat.
        bias: whether to learn beta (with elementwise_affine).
        dtype: the parameters' dtype (default float32).
    """

    def __init__(self, normalized_shape, eps=1e-5, elementwise_affine=True, bias=True, dtype=None):
        super().__init__()
        xp = get_backend().xp
        dtype = xp.float32 if dtype is None else dtype
        shape = [normalized_shape] if isinstance(normalized_shape, int) else normalized_shape
        if not isinstance(shape, (list, tuple)) or not shape:
            raise TypeError(f"normalized_shape must be an integer or a tuple of integers, got {normalized_shape!r}")
        self.normalized_shape = tuple(arguments.integer("normalized_shape", length) for length in shape)
        self.eps = arguments.real("eps", eps, low=0, low_open=True)
        self.elementwise_affine = bool(elementwise_affine)
        affine_bias = self.elementwise_affine and bool(bias)
        self.weight = Parameter(xp.ones(self.normalized_shape, dtype=dtype)) if self.elementwise_affine else None
        self.bias = Parameter(xp.zeros(self.normalized_shape, dtype=dtype)) if affine_bias else None

    def forward(self, x):
        if self.weight is not None:  # the input's backend and dtype: those of the parameters
            check_input(x, ndim=getattr(x, "ndim", 0), name="LayerNorm", like=self.weight.data)
        y, cache = F.layer_norm(
            x,
            self.normalized_shape,
            None if self.weight is None else self.weight.data,
            None if self.bias is None else self.bias.data,
            self.eps,
        )
        self.save_for_backward(cache)
        return y

    def backward(self, grad_output, input_grad=True):
        grad_x, grad_weight, grad_bias = F.layer_norm_backward(self.saved_for_backward(), grad_output, input_grad)
        self.accumulate_grads(weight=grad_weight, bias=grad_bias)
        return grad_x

    @classmethod
    def stored_size(cls, config):
        shape = config["normalized_shape"]
        size = 1
        for length in [shape] if isinstance(shape, int) else shape:
            size *= arguments.integer("normalized_shape", length)
        affine = config.get("elementwise_affine", True)
        return size * (affine + (affine and config.get("bias", True)))

    def config(self):
        return {
            "normalized_shape": list(self.normalized_shape),
            "eps": self.eps,
            "elementwise_affine": self.elementwise_affine,
            "bias": self.bias is not None,
        }
