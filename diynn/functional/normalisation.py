"""Batch normalisation as a functional pair."""

from __future__ import annotations

from backends import backend_of


def per_channel_sum(x3):
    """(N, C, L) -> (C,): the sum over the batch first, which adds whole contiguous (C, L) blocks."""
    xp = backend_of(x3).xp
    return xp.sum(xp.sum(x3, axis=0), axis=-1)


def per_channel(values, x3):
    """A (C,) vector laid out as a (C, L) block for an (N, C, L) operand: broadcasting it then runs
    over C L contiguous values per image instead of L at a time."""
    xp = backend_of(x3).xp
    return values[:, None] * xp.ones((1, x3.shape[2]), dtype=values.dtype, device=values.device)


def batch_norm(x, weight, bias, running_mean, running_var, training=True, momentum=0.1, eps=1e-5):
    """y = gamma (x - mean) / sqrt(var + eps) + beta per channel (axis 1) of x: (N, C, ...).

    Training: the batch's statistics (biased variance), and the running ones updated in place,
    (1 - momentum) running + momentum batch (the unbiased variance, as in PyTorch). Otherwise the
    running statistics. x is viewed as (N, C, L) (L = 1 for (N, C) inputs, H W for images), so
    that per-channel sums are reductions over axes 0 and 2. Cache: (x_centred (N, C, L),
    inv_std (C,), gamma, count per channel, training).
    """
    xp = backend_of(x).xp
    n, channels = x.shape[0], x.shape[1]
    x3 = xp.reshape(x, (n, channels, -1))
    count = n * x3.shape[2]
    if training:
        if count < 2:
            raise ValueError(f"batch norm in training mode needs more than one value per channel, got {tuple(x.shape)}")
        mean = per_channel_sum(x3) / count
        centred = x3 - per_channel(mean, x3)
        var = xp.sum(xp.vecdot(centred, centred, axis=-1), axis=0) / count
        running_mean *= 1 - momentum
        running_mean += momentum * mean
        running_var *= 1 - momentum
        running_var += (momentum * count / (count - 1)) * var
    else:
        centred, var = x3 - per_channel(running_mean, x3), running_var
    inv_std = 1 / xp.sqrt(var + eps)  # (C,)
    y = centred * per_channel(weight * inv_std, x3)
    y += per_channel(bias, x3)
    return xp.reshape(y, x.shape), (centred, inv_std, weight, count, training)


def batch_norm_backward(cache, grad_y, input_grad=True):
    """(dL/dx, dL/dgamma, dL/dbeta) from dL/dy of x's shape."""
    # x_hat = (x - mean) inv_std, y = gamma x_hat + beta; with g = dL/dy per channel:
    # dL/dgamma = sum g x_hat, dL/dbeta = sum g, and in training (the statistics depend on x)
    # dL/dx = gamma inv_std (g - mean(g) - x_hat mean(g x_hat)); otherwise dL/dx = gamma inv_std g
    centred, inv_std, weight, count, training = cache
    xp = backend_of(grad_y).xp
    g = xp.reshape(grad_y, centred.shape)
    sum_g = per_channel_sum(g)
    sum_g_centred = xp.sum(xp.vecdot(g, centred, axis=-1), axis=0)
    grad_weight, grad_bias = sum_g_centred * inv_std, sum_g
    if not input_grad:
        return None, grad_weight, grad_bias
    scale = weight * inv_std  # gamma inv_std, (C,)
    if not training:
        return xp.reshape(g * per_channel(scale, g), grad_y.shape), grad_weight, grad_bias
    # the two mean terms, written on the centred x: x_hat = centred inv_std
    grad = centred * per_channel(-(inv_std**2) * sum_g_centred / count, g)
    grad += g
    grad -= per_channel(sum_g / count, g)
    grad *= per_channel(scale, g)
    return xp.reshape(grad, grad_y.shape), grad_weight, grad_bias
