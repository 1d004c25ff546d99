"""Batch and layer normalisation as functional pairs, each compiled or portable behind one selection
(BATCH_NORM, LAYER_NORM)."""

from __future__ import annotations

import math
from typing import NamedTuple

from ..backends import backend_of, chunk_bounds, kernel, kernel_threads, parallel_range
from ..checks import check_floating, check_gradient, check_input, check_same_backend
from .selection import Family, Implementation, compiles


def per_channel_sum(x3):
    """(N, C, L) -> (C,): the sum over the batch first, which adds whole contiguous (C, L) blocks."""
    xp = backend_of(x3).xp
    return xp.sum(xp.sum(x3, axis=0), axis=-1)


def per_channel(values, x3):
    """A (C,) vector laid out as a (C, L) block for an (N, C, L) operand: broadcasting it then runs
    over C L contiguous values per image instead of L at a time."""
    xp = backend_of(x3).xp
    return values[:, None] * xp.ones((1, x3.shape[2]), dtype=values.dtype, device=values.device)


class BatchNormCache(NamedTuple):
    """What the backward needs: x - mean as (N, C, L), 1 / sqrt(var + eps) (C,), gamma (C,), the
    values per channel, whether the batch's statistics were used, and x's shape."""

    centred: object
    inv_std: object
    weight: object
    count: int
    training: bool
    shape: tuple


class CompiledBatchNormCache(BatchNormCache):
    """The compiled path's cache: the same values, for the compiled backward."""


def batch_norm(x, weight, bias, running_mean, running_var, training=True, momentum=0.1, eps=1e-5):
    """y = gamma (x - mean) / sqrt(var + eps) + beta per channel (axis 1) of x.

    Training: the batch's statistics (biased variance), and the running ones updated in place,
    (1 - momentum) running + momentum batch (the unbiased variance, as in PyTorch). Otherwise the
    running statistics. x is viewed as (N, C, L) (L = 1 for (N, C) inputs, H W for images), so
    that per-channel sums are reductions over axes 0 and 2.

    Args:
        x: (N, C, ...) input: (N, C), (N, C, L) or (N, C, H, W).
        weight: gamma (C,), of x's dtype.
        bias: beta (C,), of x's dtype.
        running_mean: (C,), of x's dtype; updated in place in training.
        running_var: (C,), of x's dtype; updated in place in training.
        training: normalise with the batch's statistics (and update the running ones), else with
            the running ones.
        momentum: the weight of the batch in the running statistics' update.
        eps: added to the variance.

    Returns:
        (y, cache): y of x's shape and dtype; the cache for `batch_norm_backward`, of the type of
            the implementation BATCH_NORM chose (compiled kernels where they are on).

    Raises:
        ValueError: operands whose shapes do not fit together, or a training batch with one value
            per channel.
        TypeError: operands of different backends or dtypes.
    """
    _check_operands(x, weight, bias, running_mean, running_var)
    backend = backend_of(x)
    x3 = backend.xp.reshape(x, (x.shape[0], x.shape[1], -1))
    if training and x3.shape[0] * x3.shape[2] < 2:
        raise ValueError(f"batch norm in training mode needs more than one value per channel, got {tuple(x.shape)}")
    forward = BATCH_NORM.choose(backend).run
    y3, cache = forward(backend, x3, weight, bias, running_mean, running_var, training, momentum, eps, x.shape)
    return backend.xp.reshape(y3, x.shape), cache


def batch_norm_backward(cache, grad_y, input_grad=True):
    """The gradients of `batch_norm`.

    In training the batch's statistics depend on x, which adds two mean terms to dL/dx; in
    evaluation dL/dx = gamma dL/dy / sqrt(var + eps).

    Args:
        cache: the cache `batch_norm` returned.
        grad_y: dL/dy, of x's shape and dtype.
        input_grad: False skips dL/dx (returned as None).

    Returns:
        (grad_x, grad_weight, grad_bias): dL/dx of x's shape (or None), dL/dgamma (C,) and
            dL/dbeta (C,).
    """
    # x_hat = (x - mean) inv_std, y = gamma x_hat + beta; with g = dL/dy per channel:
    # dL/dgamma = sum g x_hat, dL/dbeta = sum g, and in training (the statistics depend on x)
    # dL/dx = gamma inv_std (g - mean(g) - x_hat mean(g x_hat)); otherwise dL/dx = gamma inv_std g
    backward = BATCH_NORM.backward_of(cache)
    check_gradient(grad_y, cache.shape, cache.centred.dtype, "batch_norm_backward")
    return backward(backend_of(grad_y), cache, grad_y, input_grad)


def _check_operands(x, weight, bias, running_mean, running_var):
    """Clear errors for operands that do not fit together (the compiled kernels would read past them):
    x (N, C, ...) and four (C,) vectors, all of one dtype."""
    check_input(weight, ndim=1, name="batch_norm's weight")
    channels, axes = weight.shape[0], max(getattr(x, "ndim", 2), 2)  # any number of axes from 2 on
    check_input(x, ndim=axes, name="batch_norm", sizes={1: channels}, like=weight)
    for name, vector in (("bias", bias), ("running_mean", running_mean), ("running_var", running_var)):
        check_input(vector, ndim=1, name=f"batch_norm's {name}", sizes={0: channels}, like=weight)


def _update_running(running_mean, running_var, mean, var, momentum, count):
    """running <- (1 - momentum) running + momentum batch, in place (the unbiased variance)."""
    running_mean *= 1 - momentum
    running_mean += momentum * mean
    running_var *= 1 - momentum
    running_var += (momentum * count / (count - 1)) * var


def _batch_norm_portable(backend, x3, weight, bias, running_mean, running_var, training, momentum, eps, shape):
    xp, count = backend.xp, x3.shape[0] * x3.shape[2]
    if training:
        mean = per_channel_sum(x3) / count
        centred = x3 - per_channel(mean, x3)
        var = xp.sum(xp.vecdot(centred, centred, axis=-1), axis=0) / count
        _update_running(running_mean, running_var, mean, var, momentum, count)
    else:
        mean, var = running_mean, running_var
        centred = x3 - per_channel(mean, x3)
    inv_std = 1 / xp.sqrt(var + eps)  # (C,)
    y = centred * per_channel(weight * inv_std, x3)
    y += per_channel(bias, x3)
    return y, BatchNormCache(centred, inv_std, weight, count, training, shape)


def _batch_norm_backward_portable(backend, cache, grad_y, input_grad):
    centred, inv_std, weight, count, training, _ = cache
    xp = backend.xp
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


def _batch_norm_compiled(backend, x3, weight, bias, running_mean, running_var, training, momentum, eps, shape):
    xp, (_, channels, _), count = backend.xp, x3.shape, x3.shape[0] * x3.shape[2]
    if training:
        mean, var = xp.empty(channels, dtype=x3.dtype), xp.empty(channels, dtype=x3.dtype)
        backend.compiled(_channel_statistics)(x3, mean, var)
        _update_running(running_mean, running_var, mean, var, momentum, count)
    else:
        mean, var = running_mean, running_var
    inv_std = 1 / xp.sqrt(var + eps)  # (C,)
    centred, y = (xp.empty(x3.shape, dtype=x3.dtype) for _ in range(2))
    backend.compiled(_normalise_channels)(x3, mean, weight * inv_std, bias, centred, y)
    return y, CompiledBatchNormCache(centred, inv_std, weight, count, training, shape)


def _batch_norm_backward_compiled(backend, cache, grad_y, input_grad):
    centred, inv_std, weight, _, training, _ = cache
    xp = backend.xp
    g = xp.reshape(grad_y, centred.shape)
    sums = xp.empty((2, centred.shape[1]), dtype=g.dtype)  # sum g, sum g centred
    grad = xp.empty(g.shape, dtype=g.dtype) if input_grad else xp.empty((0, 0, 0), dtype=g.dtype)
    backend.compiled(_batch_norm_backward_channels)(g, centred, inv_std, weight * inv_std, training, sums, grad)
    return (xp.reshape(grad, grad_y.shape) if input_grad else None), sums[1] * inv_std, sums[0]


def select_batch_norm(backend) -> str:
    """The compiled kernels where they are on, else the portable array code."""
    return "compiled" if backend.compiles_kernels else "portable"


# Compiled CPU path (numba, see backends.cpu_kernels): one channel per iteration of the parallel loop,
# each sum accumulated in float64.


@kernel(reassociate=True)
def _channel_statistics(x3, mean, var):
    """mean and biased variance (C,) of each channel of x3 (N, C, L)."""
    n, length = x3.shape[0], x3.shape[2]
    for c in parallel_range(x3.shape[1]):
        total = 0.0
        for i in range(n):
            for j in range(length):
                total += x3[i, c, j]
        mu = total / (n * length)
        squares = 0.0
        for i in range(n):
            for j in range(length):
                squares += (x3[i, c, j] - mu) ** 2
        mean[c], var[c] = mu, squares / (n * length)


@kernel
def _normalise_channels(x3, mean, scale, shift, centred, y3):
    """centred = x3 - mean, y3 = centred scale + shift, per channel (axis 1) of (N, C, L)."""
    for c in parallel_range(x3.shape[1]):
        for i in range(x3.shape[0]):
            for j in range(x3.shape[2]):
                value = x3[i, c, j] - mean[c]
                centred[i, c, j] = value
                y3[i, c, j] = value * scale[c] + shift[c]


@kernel(reassociate=True)
def _batch_norm_backward_channels(g3, centred, inv_std, scale, training, sums, grad3):
    """sums[0] = sum g, sums[1] = sum g centred per channel; where grad3 has the batch's size, the
    input gradient (the formula in batch_norm_backward) into it."""
    n, length = g3.shape[0], g3.shape[2]
    count, real = n * length, g3.dtype.type  # the sums in float64, the per-element pass in g3's dtype
    for c in parallel_range(g3.shape[1]):
        sum_g, sum_g_centred = 0.0, 0.0
        for i in range(n):
            for j in range(length):
                sum_g += g3[i, c, j]
                sum_g_centred += g3[i, c, j] * centred[i, c, j]
        sums[0, c], sums[1, c] = sum_g, sum_g_centred
        if grad3.shape[0] == n:
            mean_g = real(sum_g / count if training else 0.0)
            slope = real(inv_std[c] ** 2 * sum_g_centred / count if training else 0.0)
            for i in range(n):
                for j in range(length):
                    grad3[i, c, j] = scale[c] * (g3[i, c, j] - mean_g - centred[i, c, j] * slope)


BATCH_NORM = Family(
    "batch_norm",
    select_batch_norm,
    {
        "compiled": Implementation(
            _batch_norm_compiled, _batch_norm_backward_compiled, CompiledBatchNormCache, compiles
        ),
        "portable": Implementation(_batch_norm_portable, _batch_norm_backward_portable, BatchNormCache),
    },
)


class LayerNormCache(NamedTuple):
    """What the backward needs: the normalised rows x_hat (M, D) (M rows of D values, the
    normalised axes flattened), 1 / sqrt(var + eps) per row (M, 1), gamma flattened (D,) or None,
    whether there was a beta, x's shape and the normalised shape."""

    normalised: object
    inv_std: object
    weight: object
    has_bias: bool
    shape: tuple
    normalized_shape: tuple


class CompiledLayerNormCache(LayerNormCache):
    """The compiled path's cache: the same values, for the compiled backward."""


def layer_norm(x, normalized_shape, weight=None, bias=None, eps=1e-5):
    """y = gamma (x - mean) / sqrt(var + eps) + beta over the last len(normalized_shape) axes.

    Each sample's values over those axes (a row) are standardised with the row's own mean and
    biased variance, in training and evaluation alike (no running statistics), then scaled and
    shifted by gamma and beta elementwise, as PyTorch's layer_norm.

    Args:
        x: (..., *normalized_shape) input, floating point.
        normalized_shape: the shape of the trailing axes normalised over, an int or a tuple.
        weight: gamma, of shape normalized_shape and x's dtype, or None (no scale).
        bias: beta, of shape normalized_shape and x's dtype, or None (no shift).
        eps: added to the variance.

    Returns:
        (y, cache): y of x's shape and dtype; the cache for `layer_norm_backward`.

    Raises:
        ValueError: x's trailing axes, gamma or beta not of normalized_shape.
        TypeError: operands of different backends or dtypes.
    """
    normalized_shape = _check_layer_norm_operands(x, normalized_shape, weight, bias)
    backend = backend_of(x)
    xp, size = backend.xp, 1
    for length in normalized_shape:
        size *= length
    x2 = xp.reshape(x, (-1, size))  # rows of D values: a view for a contiguous x
    flat_weight = None if weight is None else xp.reshape(weight, (size,))
    flat_bias = None if bias is None else xp.reshape(bias, (size,))
    forward = LAYER_NORM.choose(backend).run
    y2, cache = forward(backend, x2, flat_weight, flat_bias, eps, tuple(x.shape), normalized_shape)
    return xp.reshape(y2, x.shape), cache


def layer_norm_backward(cache, grad_y, input_grad=True):
    """The gradients of `layer_norm`.

    The mean and the variance of each row depend on each of its values, which adds two mean terms
    to dL/dx, as in batch normalisation's training mode (docs/derivations/transformer.md).

    Args:
        cache: the cache `layer_norm` returned.
        grad_y: dL/dy, of x's shape and dtype.
        input_grad: False skips dL/dx (returned as None).

    Returns:
        (grad_x, grad_weight, grad_bias): dL/dx of x's shape (or None), dL/dgamma and dL/dbeta of
            normalized_shape (None where there was no gamma or no beta).
    """
    # with g = dL/dy per row and h = gamma g = dL/dx_hat: dL/dgamma = sum over rows g x_hat,
    # dL/dbeta = sum over rows g, dL/dx = inv_std (h - mean(h) - x_hat mean(h x_hat)), means per row
    backward = LAYER_NORM.backward_of(cache)
    check_gradient(grad_y, cache.shape, cache.normalised.dtype, "layer_norm_backward")
    backend = backend_of(grad_y)
    g = backend.xp.reshape(grad_y, cache.normalised.shape)
    grad, grad_weight, grad_bias = backward(backend, cache, g, input_grad)
    xp, shape = backend.xp, cache.normalized_shape
    return (
        None if grad is None else xp.reshape(grad, cache.shape),
        None if grad_weight is None else xp.reshape(grad_weight, shape),
        None if grad_bias is None else xp.reshape(grad_bias, shape),
    )


def _layer_norm_portable(backend, x2, weight, bias, eps, shape, normalized_shape):
    xp = backend.xp
    centred = x2 - xp.mean(x2, axis=1, keepdims=True)
    var = xp.mean(centred * centred, axis=1, keepdims=True)  # the biased variance, (M, 1)
    inv_std = 1 / xp.sqrt(var + eps)
    normalised = centred * inv_std
    y = normalised if weight is None else normalised * weight
    if bias is not None:
        y = y + bias
    return y, LayerNormCache(normalised, inv_std, weight, bias is not None, shape, normalized_shape)


def _layer_norm_backward_portable(backend, cache, g, input_grad):
    """(dL/dx, dL/dgamma, dL/dbeta) as (M, D), (D,), (D,) from g = dL/dy (M, D)."""
    normalised, inv_std, weight, has_bias = cache[:4]
    xp = backend.xp
    grad_weight = None if weight is None else xp.sum(g * normalised, axis=0)
    grad_bias = xp.sum(g, axis=0) if has_bias else None
    if not input_grad:
        return None, grad_weight, grad_bias
    h = g if weight is None else g * weight
    grad = h - xp.mean(h, axis=1, keepdims=True)
    grad -= normalised * (xp.sum(h * normalised, axis=1, keepdims=True) / normalised.shape[1])
    grad *= inv_std
    return grad, grad_weight, grad_bias


def _layer_norm_compiled(backend, x2, weight, bias, eps, shape, normalized_shape):
    xp, (rows, size) = backend.xp, x2.shape
    scale = xp.ones(size, dtype=x2.dtype) if weight is None else weight
    shift = xp.zeros(size, dtype=x2.dtype) if bias is None else bias
    normalised, y = xp.empty(x2.shape, dtype=x2.dtype), xp.empty(x2.shape, dtype=x2.dtype)
    inv_std = xp.empty((rows, 1), dtype=x2.dtype)
    backend.compiled(_normalise_rows)(x2, scale, shift, eps, normalised, inv_std, y)
    return y, CompiledLayerNormCache(normalised, inv_std, weight, bias is not None, shape, normalized_shape)


def _layer_norm_backward_compiled(backend, cache, g, input_grad):
    normalised, inv_std, weight, has_bias = cache[:4]
    xp, (rows, size) = backend.xp, normalised.shape
    bounds = chunk_bounds(rows, kernel_threads())
    partial = xp.zeros((len(bounds) - 1, 2, size), dtype=xp.float64)  # each thread's sums g x_hat, g
    grad = xp.empty(g.shape, dtype=g.dtype) if input_grad else xp.empty((0, 0), dtype=g.dtype)
    scale = xp.ones(size, dtype=g.dtype) if weight is None else weight
    backend.compiled(_layer_norm_backward_rows)(g, normalised, inv_std, scale, bounds, partial, grad)
    sums = xp.astype(xp.sum(partial, axis=0), g.dtype)
    return (grad if input_grad else None), (None if weight is None else sums[0]), (sums[1] if has_bias else None)


def select_layer_norm(backend) -> str:
    """The compiled kernels where they are on, else the portable array code."""
    return "compiled" if backend.compiles_kernels else "portable"


# Compiled CPU path: one row per iteration of the parallel loop (rows split into one chunk per
# thread in the backward, whose gamma and beta sums are per-thread partial sums), sums in float64.
# (128, 50, 64) float32, forward + backward on 2 cores: 0.42 ms, the portable code 2.3 ms, PyTorch's
# CPU layer norm 0.40-0.52 ms (the portable code's dozen array passes were the hot part).


@kernel(reassociate=True)
def _normalise_rows(x2, scale, shift, eps, normalised, inv_std, y):
    """normalised = (x2 - mean) / sqrt(var + eps), y = normalised scale + shift, per row of (M, D)."""
    size, real = x2.shape[1], x2.dtype.type  # the sums in float64, the per-element pass in x2's dtype
    for i in parallel_range(x2.shape[0]):
        total = 0.0
        for j in range(size):
            total += x2[i, j]
        mu = total / size
        squares = 0.0
        for j in range(size):
            squares += (x2[i, j] - mu) ** 2
        s, mean = real(1.0 / math.sqrt(squares / size + eps)), real(mu)
        inv_std[i, 0] = s
        for j in range(size):
            value = (x2[i, j] - mean) * s
            normalised[i, j] = value
            y[i, j] = value * scale[j] + shift[j]


@kernel(reassociate=True)
def _layer_norm_backward_rows(g2, normalised, inv_std, scale, bounds, partial, grad):
    """partial[t] = (sum g x_hat, sum g) over thread t's rows; where grad has the rows' size, the
    input gradient (the formula in layer_norm_backward) into it."""
    size, real = g2.shape[1], g2.dtype.type  # the sums in float64, the per-element pass in g2's dtype
    for t in parallel_range(len(bounds) - 1):
        for i in range(bounds[t], bounds[t + 1]):
            sum_h, sum_h_normalised = 0.0, 0.0
            for j in range(size):
                h = g2[i, j] * scale[j]
                sum_h += h
                sum_h_normalised += h * normalised[i, j]
                partial[t, 0, j] += g2[i, j] * normalised[i, j]
                partial[t, 1, j] += g2[i, j]
            if grad.shape[0] == g2.shape[0]:
                mean_h, slope = real(sum_h / size), real(sum_h_normalised / size)
                for j in range(size):
                    grad[i, j] = inv_std[i, 0] * (g2[i, j] * scale[j] - mean_h - normalised[i, j] * slope)


LAYER_NORM = Family(
    "layer_norm",
    select_layer_norm,
    {
        "compiled": Implementation(
            _layer_norm_compiled, _layer_norm_backward_compiled, CompiledLayerNormCache, compiles
        ),
        "portable": Implementation(_layer_norm_portable, _layer_norm_backward_portable, LayerNormCache),
    },
)


def _check_layer_norm_operands(x, normalized_shape, weight, bias) -> tuple:
    """normalized_shape as a tuple, after clear errors for operands that do not fit together: x's
    trailing axes, gamma and beta of normalized_shape, all of one backend and dtype."""
    shape = (normalized_shape,) if isinstance(normalized_shape, int) else tuple(normalized_shape)
    if not shape or not all(isinstance(n, int) and n >= 1 for n in shape):
        raise ValueError(f"layer_norm's normalized_shape must be positive integers, got {normalized_shape!r}")
    check_floating(x, "layer_norm")
    if tuple(x.shape[x.ndim - len(shape) :]) != shape or x.ndim < len(shape):
        raise ValueError(f"layer_norm expects an input whose last axes are {shape}, got shape {tuple(x.shape)}")
    for name, operand in (("weight", weight), ("bias", bias)):
        if operand is None:
            continue
        check_input(operand, ndim=len(shape), name=f"layer_norm's {name}")
        if tuple(operand.shape) != shape:
            raise ValueError(f"layer_norm's {name} expects shape {shape}, got {tuple(operand.shape)}")
        check_same_backend(x, operand, "layer_norm")
        if operand.dtype != x.dtype:
            raise TypeError(f"layer_norm's {name} has dtype {operand.dtype} and its input {x.dtype}: they must match")
    return shape
