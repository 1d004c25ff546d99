"""Resampling images: upsampling (nearest, bilinear) and adaptive average pooling as functional pairs.

Each of these maps an image plane X (H, W) to Y (OH, OW) by a weighted sum of input pixels that
separates into rows and columns: Y = R X C^T with R (OH, H) and C (OW, W) fixed by the geometry
(an interpolation's weights, or a mean over each bin). Its backward is the adjoint,
dL/dX = R^T dL/dY C. The matrices are small (28x28 images: 56x28 at most), so one batched product
over the N C planes computes every case alike.
"""

from __future__ import annotations

import math
from typing import NamedTuple

from .. import arguments
from ..backends import backend_of
from ..checks import check_gradient, check_input

MODES = ("nearest", "bilinear")


class ResampleCache(NamedTuple):
    """The row and column matrices R (OH, H) and C (OW, W), and the output's shape."""

    rows: object
    columns: object
    shape: tuple


def resample(x, rows, columns):
    """y = R x C^T on every (H, W) plane of x (N, C, H, W). Returns (y (N, C, OH, OW), ResampleCache)."""
    y = rows @ x @ columns.T  # (OH, H) @ (N, C, H, W) @ (W, OW)
    return y, ResampleCache(rows, columns, tuple(y.shape))


def resample_backward(cache: ResampleCache, grad_y, name="resample_backward"):
    """dL/dx = R^T dL/dy C (the adjoint of y = R x C^T)."""
    check_gradient(grad_y, cache.shape, cache.rows.dtype, name)
    return cache.rows.T @ grad_y @ cache.columns


def upsample(x, scale_factor, mode="nearest", align_corners=False):
    """Upsampling by `scale_factor`, as torch.nn.Upsample.

    "nearest" takes the input pixel floor(i / s); "bilinear" interpolates between the two nearest
    (pixel centres aligned, or the corners with align_corners=True).

    Args:
        x: (N, C, H, W) input.
        scale_factor: a number or an (s_h, s_w) pair, each >= 1.
        mode: "nearest" or "bilinear".
        align_corners: bilinear only: map the corner pixels of input and output onto each other.

    Returns:
        (y, cache): y (N, C, floor(H s_h), floor(W s_w)) of x's dtype; the ResampleCache for
            `upsample_backward`.

    Raises:
        ValueError: x is not 4-D, an unknown mode, align_corners with "nearest", or a scale_factor
            that is not a number >= 1 or a pair of them.
    """
    check_input(x, ndim=4, name="upsample")
    mode = arguments.choice("mode", mode, MODES)
    if mode == "nearest" and align_corners:
        raise ValueError("align_corners applies to bilinear upsampling only (mode='bilinear')")
    scales = scale_factor if isinstance(scale_factor, (tuple, list)) else (scale_factor, scale_factor)
    if len(scales) != 2:
        raise ValueError(f"scale_factor must be a number or a pair (height, width), got {scale_factor!r}")
    scales = [arguments.real("scale_factor", s, low=1) for s in scales]
    rows, columns = (
        _interpolation(x, size, math.floor(size * scale), scale, mode, align_corners)
        for size, scale in zip(x.shape[2:], scales)
    )
    return resample(x, rows, columns)


def upsample_backward(cache: ResampleCache, grad_y):
    """The gradient of `upsample`: the adjoint of y = R x C^T, dL/dx = R^T dL/dy C.

    R (OH, H) and C (OW, W) hold the interpolation's weights: each input pixel collects the gradients
    of the output pixels it contributed to, with its weights.

    Args:
        cache: the ResampleCache `upsample` returned.
        grad_y: dL/dy (N, C, OH, OW), of y's dtype.

    Returns:
        grad_x: dL/dx (N, C, H, W).
    """
    return resample_backward(cache, grad_y, "upsample_backward")


def adaptive_avg_pool2d(x, output_size):
    """Mean over bins of x that make an (OH, OW) output, as PyTorch's.

    Bin i of an axis of length L covers [floor(i L / O), ceil((i + 1) L / O)); output_size 1 is
    global average pooling.

    Args:
        x: (N, C, H, W) input.
        output_size: OH = OW, or an (OH, OW) pair, each >= 1.

    Returns:
        (y, cache): y (N, C, OH, OW) of x's dtype; the ResampleCache for
            `adaptive_avg_pool2d_backward`.
    """
    check_input(x, ndim=4, name="adaptive_avg_pool2d")
    size = arguments.integer_pair("output_size", output_size)
    return resample(x, *(_bins(x, length, out) for length, out in zip(x.shape[2:], size)))


def adaptive_avg_pool2d_backward(cache: ResampleCache, grad_y):
    """The gradient of `adaptive_avg_pool2d`: the adjoint of y = R x C^T, dL/dx = R^T dL/dy C.

    Row i of R (OH, H), and of C (OW, W), averages over bin i of its axis.

    Args:
        cache: the ResampleCache `adaptive_avg_pool2d` returned.
        grad_y: dL/dy (N, C, OH, OW), of y's dtype.

    Returns:
        grad_x: dL/dx (N, C, H, W).
    """
    # each input pixel gets 1 / (its bin's size) of each of its bins' output gradients
    return resample_backward(cache, grad_y, "adaptive_avg_pool2d_backward")


def _bins(like, length: int, out: int):
    """(out, length): row i averages PyTorch's adaptive bin i."""
    xp = backend_of(like).xp
    i = xp.reshape(xp.arange(out, device=like.device), (out, 1))
    j = xp.reshape(xp.arange(length, device=like.device), (1, length))
    start, stop = (i * length) // out, -((-(i + 1) * length) // out)  # floor, ceil
    inside = xp.astype((j >= start) & (j < stop), like.dtype)
    return inside / xp.astype(stop - start, like.dtype)


def _interpolation(like, length: int, out: int, scale: float, mode: str, align_corners: bool):
    """(out, length): row i holds the weights of output pixel i on the input pixels."""
    xp = backend_of(like).xp
    i = xp.astype(xp.reshape(xp.arange(out, device=like.device), (out, 1)), xp.float64)
    j = xp.reshape(xp.arange(length, device=like.device), (1, length))
    if out == length:  # an axis the scale leaves as long as it was is copied (as in PyTorch)
        return xp.astype(j == xp.astype(i, xp.int64), like.dtype)
    if mode == "nearest":
        return xp.astype(j == _nearest_source(xp, i, length, out, scale), like.dtype)
    if align_corners:
        position = i * ((length - 1) / (out - 1)) if out > 1 else 0 * i
    else:
        position = xp.maximum((i + 0.5) / scale - 0.5, 0.0)
    low = xp.astype(xp.floor(position), xp.int64)
    high = xp.minimum(low + 1, length - 1)
    weight = position - xp.astype(low, xp.float64)  # of the higher pixel
    matrix = xp.astype(j == low, xp.float64) * (1 - weight) + xp.astype(j == high, xp.float64) * weight
    return xp.astype(matrix, like.dtype)


def _nearest_source(xp, i, length: int, out: int, scale: float):
    """The input pixel of each output pixel i (out, 1), as PyTorch's "nearest" picks it: i // 2
    where the output is twice the input, else floor(i / s) computed in float32."""
    if out == 2 * length:
        return xp.astype(i, xp.int64) // 2
    step = xp.asarray(1.0 / scale, dtype=xp.float32)
    return xp.astype(xp.minimum(xp.floor(xp.astype(i, xp.float32) * step), length - 1), xp.int64)
