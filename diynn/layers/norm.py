"""Batch normalisation with running statistics for evaluation."""

from __future__ import annotations

from backends import backend_of, get_backend

from ..checks import check_input
from ..module import Module, Parameter


class _BatchNorm(Module):
    """y = gamma (x - mean) / sqrt(var + eps) + beta, per feature/channel (axis 1).

    Training: batch statistics (biased variance), and running_mean / running_var updated as
    (1 - momentum) running + momentum batch (unbiased variance, as in PyTorch). Eval: running ones.
    """

    ndims: tuple[int, ...]
    reduce_axes: dict[int, tuple[int, ...]]

    def __init__(self, num_features, eps=1e-5, momentum=0.1, dtype=None):
        super().__init__()
        xp = get_backend().xp
        dtype = xp.float32 if dtype is None else dtype
        self.num_features, self.eps, self.momentum = num_features, eps, momentum
        self.weight = Parameter(xp.ones(num_features, dtype=dtype))
        self.bias = Parameter(xp.zeros(num_features, dtype=dtype))
        self.register_buffer("running_mean", xp.zeros(num_features, dtype=dtype))
        self.register_buffer("running_var", xp.ones(num_features, dtype=dtype))

    def forward(self, x):
        xp = backend_of(x).xp
        name = type(self).__name__
        if x.ndim not in self.ndims:
            raise ValueError(
                f"{name} expects an input with {' or '.join(map(str, self.ndims))} axes, got shape {tuple(x.shape)}"
            )
        check_input(x, ndim=x.ndim, name=name, sizes={1: self.num_features}, like=self.weight.data)
        axes = self.reduce_axes[x.ndim]
        shape = (1, self.num_features) + (1,) * (x.ndim - 2)
        if self.training:
            count = x.size // self.num_features
            if count < 2:
                raise ValueError(f"{name} in training mode needs more than one value per channel, got {tuple(x.shape)}")
            mean = xp.mean(x, axis=axes)
            var = xp.var(x, axis=axes)
            self.running_mean *= 1 - self.momentum
            self.running_mean += self.momentum * mean
            self.running_var *= 1 - self.momentum
            self.running_var += (self.momentum * count / (count - 1)) * var
        else:
            mean, var = self.running_mean, self.running_var
        self.inv_std = xp.reshape(1 / xp.sqrt(var + self.eps), shape)
        self.x_hat = (x - xp.reshape(mean, shape)) * self.inv_std
        self.shape = shape
        return self.x_hat * xp.reshape(self.weight.data, shape) + xp.reshape(self.bias.data, shape)

    def backward(self, grad_output, input_grad=True):
        xp = backend_of(grad_output).xp
        axes = self.reduce_axes[grad_output.ndim]
        self.weight.accumulate(xp.sum(grad_output * self.x_hat, axis=axes))
        self.bias.accumulate(xp.sum(grad_output, axis=axes))
        grad_x_hat = grad_output * xp.reshape(self.weight.data, self.shape)
        if not self.training:
            return grad_x_hat * self.inv_std  # the statistics are constants
        # batch statistics depend on x: dL/dx = inv_std (g - mean(g) - x_hat mean(g x_hat)), g = dL/dx_hat
        mean_grad = xp.mean(grad_x_hat, axis=axes, keepdims=True)
        mean_grad_x_hat = xp.mean(grad_x_hat * self.x_hat, axis=axes, keepdims=True)
        return self.inv_std * (grad_x_hat - mean_grad - self.x_hat * mean_grad_x_hat)

    def config(self):
        return {"num_features": self.num_features, "eps": self.eps, "momentum": self.momentum}


class BatchNorm1d(_BatchNorm):
    """x: (N, C) or (N, C, L) -> y of the same shape; statistics per channel C."""

    ndims = (2, 3)
    reduce_axes = {2: (0,), 3: (0, 2)}


class BatchNorm2d(_BatchNorm):
    """x: (N, C, H, W) -> y of the same shape; statistics per channel C."""

    ndims = (4,)
    reduce_axes = {4: (0, 2, 3)}
