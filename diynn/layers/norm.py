"""Batch normalisation with running statistics for evaluation."""

from __future__ import annotations

from backends import backend_of, get_backend

from .. import arguments
from ..checks import check_input
from ..module import Module, Parameter


def per_channel_sum(x3):
    """(N, C, L) -> (C,): the sum over the batch first, which adds whole contiguous (C, L) blocks."""
    xp = backend_of(x3).xp
    return xp.sum(xp.sum(x3, axis=0), axis=-1)


def per_channel(values, x3):
    """A (C,) vector laid out as a (C, L) block for an (N, C, L) operand: broadcasting it then runs
    over C L contiguous values per image instead of L at a time."""
    xp = backend_of(x3).xp
    return values[:, None] * xp.ones((1, x3.shape[2]), dtype=values.dtype, device=values.device)


class _BatchNorm(Module):
    """y = gamma (x - mean) / sqrt(var + eps) + beta, per feature/channel (axis 1).

    Training: batch statistics (biased variance), and running_mean / running_var updated as
    (1 - momentum) running + momentum batch (unbiased variance, as in PyTorch). Eval: running ones.
    Internally x is viewed as (N, C, L) (L = 1 for (N, C) inputs, H W for images), so that the
    per-channel sums are reductions over axes 0 and 2 and sums of products are `vecdot`s.
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
        xp = backend_of(x).xp
        name = type(self).__name__
        if getattr(x, "ndim", None) not in self.ndims:
            shape = tuple(x.shape) if hasattr(x, "shape") else type(x).__name__
            raise ValueError(f"{name} expects an input with {' or '.join(map(str, self.ndims))} axes, got {shape}")
        check_input(x, ndim=x.ndim, name=name, sizes={1: self.num_features}, like=self.weight.data)
        n, channels = x.shape[0], self.num_features
        x3 = xp.reshape(x, (n, channels, -1))  # (N, C, L)
        self.count = n * x3.shape[2]  # values per channel
        if self.training:
            if self.count < 2:
                raise ValueError(f"{name} in training mode needs more than one value per channel, got {tuple(x.shape)}")
            mean = per_channel_sum(x3) / self.count
            self.centred = x3 - per_channel(mean, x3)
            var = xp.sum(xp.vecdot(self.centred, self.centred, axis=-1), axis=0) / self.count
            self.running_mean *= 1 - self.momentum
            self.running_mean += self.momentum * mean
            self.running_var *= 1 - self.momentum
            self.running_var += (self.momentum * self.count / (self.count - 1)) * var
        else:
            self.centred, var = x3 - per_channel(self.running_mean, x3), self.running_var
        self.inv_std = 1 / xp.sqrt(var + self.eps)  # (C,)
        y = self.centred * per_channel(self.weight.data * self.inv_std, x3)
        y += per_channel(self.bias.data, x3)
        return xp.reshape(y, x.shape)

    def backward(self, grad_output, input_grad=True):
        # x_hat = (x - mean) inv_std, y = gamma x_hat + beta; with g = dL/dy per channel:
        # dL/dgamma = sum g x_hat, dL/dbeta = sum g, and in training (the statistics depend on x)
        # dL/dx = gamma inv_std (g - mean(g) - x_hat mean(g x_hat)); in eval dL/dx = gamma inv_std g
        xp = backend_of(grad_output).xp
        g = xp.reshape(grad_output, self.centred.shape)
        sum_g = per_channel_sum(g)
        sum_g_centred = xp.sum(xp.vecdot(g, self.centred, axis=-1), axis=0)
        self.weight.accumulate(sum_g_centred * self.inv_std)
        self.bias.accumulate(sum_g)
        if not input_grad:
            return None
        scale = self.weight.data * self.inv_std  # gamma inv_std, (C,)
        if not self.training:
            return xp.reshape(g * per_channel(scale, g), grad_output.shape)
        # the two mean terms, written on the centred x: x_hat = centred inv_std
        grad = self.centred * per_channel(-(self.inv_std**2) * sum_g_centred / self.count, g)
        grad += g
        grad -= per_channel(sum_g / self.count, g)
        grad *= per_channel(scale, g)
        return xp.reshape(grad, grad_output.shape)

    @classmethod
    def stored_size(cls, config):
        return 4 * arguments.integer("num_features", config["num_features"])  # weight, bias, running mean and var

    def config(self):
        return {"num_features": self.num_features, "eps": self.eps, "momentum": self.momentum}


class BatchNorm1d(_BatchNorm):
    """x: (N, C) or (N, C, L) -> y of the same shape; statistics per channel C."""

    ndims = (2, 3)


class BatchNorm2d(_BatchNorm):
    """x: (N, C, H, W) -> y of the same shape; statistics per channel C."""

    ndims = (4,)
