"""Max and average pooling of (N, C, H, W) images as functional pairs.

Each window offset (i, j) of a kh x kw kernel is one strided slice of the padded input,
x[..., i::sh, j::sw], of the output's shape; pooling combines the kh kw slices elementwise and the
backward adds each slice's share of the gradient back with a strided slice-add.
"""

from __future__ import annotations

import math
from typing import NamedTuple

from backends import backend_of

from .. import arguments
from ..checks import check_input
from .geometry import crop, output_size, pad2d


class Window(NamedTuple):
    """A pooling window's geometry, each a (height, width) pair."""

    kernel: tuple[int, int]
    stride: tuple[int, int]
    padding: tuple[int, int]


def pool_window(kernel_size, stride=None, padding=0) -> Window:
    """The checked geometry: stride defaults to the kernel; padding at most half the kernel."""
    kernel = arguments.integer_pair("kernel_size", kernel_size)
    stride = arguments.integer_pair("stride", stride) if stride is not None else kernel
    padding = arguments.integer_pair("padding", padding, minimum=0)
    if any(2 * p > k for p, k in zip(padding, kernel)):
        raise ValueError(f"padding {padding} must be at most half the kernel {kernel}")
    return Window(kernel, stride, padding)


def window_slices(x, window: Window, pad_value, name):
    """x padded with `pad_value`, and the kh kw (rows, columns) slices of it, one per kernel offset."""
    check_input(x, ndim=4, name=name)
    height, width = x.shape[2:]
    (kh, kw), (sh, sw), (ph, pw) = window
    oh, ow = output_size(height, kh, sh, ph), output_size(width, kw, sw, pw)
    if oh < 1 or ow < 1:
        raise ValueError(f"{name}: input {height}x{width} is smaller than the kernel {window.kernel}")
    padded = pad2d(x, window.padding, pad_value)
    return padded, [
        (slice(i, i + sh * (oh - 1) + 1, sh), slice(j, j + sw * (ow - 1) + 1, sw)) for i in range(kh) for j in range(kw)
    ]


def scatter_windows(parts, slices, padded_shape, window: Window):
    """Sum window-offset gradients (one array per offset, the output's shape) onto the input;
    pixels in no window (stride larger than the kernel, or a remainder) get exactly zero."""
    xp = backend_of(parts[0]).xp
    overlapping = any(s < k for s, k in zip(window.stride, window.kernel))
    tiled = all(  # the windows cover every pixel exactly once: no zeros needed
        s == k and size % k == 0 for size, k, s in zip(padded_shape[2:], window.kernel, window.stride)
    )
    make = xp.empty if tiled else xp.zeros
    grad = make(padded_shape, dtype=parts[0].dtype, device=parts[0].device)
    for (rows, columns), part in zip(slices, parts):
        if overlapping:
            grad[:, :, rows, columns] += part
        else:  # each pixel is in one window at most: plain assignment, no read
            grad[:, :, rows, columns] = part
    return crop(grad, window.padding)


def max_pool2d(x, kernel_size, stride=None, padding=0):
    """y = max over each kh x kw window (stride defaults to the kernel; the padding is -inf).

    x: (N, C, H, W) -> y: (N, C, OH, OW), OH = (H + 2 ph - kh) // sh + 1. Cache: (padded x, y,
    slices, window).
    """
    window = pool_window(kernel_size, stride, padding)
    xp = backend_of(x).xp
    padded, slices = window_slices(x, window, -math.inf, "max_pool2d")
    y = padded[:, :, slices[0][0], slices[0][1]]
    for rows, columns in slices[1:]:
        y = xp.maximum(y, padded[:, :, rows, columns])
    return y, (padded, y, slices, window)


def max_pool2d_backward(cache, grad_y):
    """dL/dx: each window's gradient goes to its first maximum among the input's pixels (never to
    the padding, also when a whole window is -inf: as in PyTorch); pixels in no window get 0."""
    # dy/dx = 1 at the window's first maximum, 0 elsewhere
    padded, y, slices, window = cache
    xp = backend_of(grad_y).xp
    taken = xp.zeros(y.shape, dtype=xp.bool, device=y.device)
    inside = None
    if any(window.padding):  # where the padded image is the input, not its -inf border
        height, width = padded.shape[2:]
        (ph, pw) = window.padding
        inside = xp.zeros((1, 1, height, width), dtype=xp.bool, device=y.device)
        inside[:, :, ph : height - ph, pw : width - pw] = True
    parts = []
    for rows, columns in slices:
        first = (padded[:, :, rows, columns] == y) & ~taken
        if inside is not None:
            first &= inside[:, :, rows, columns]
        taken |= first
        parts.append(grad_y * xp.astype(first, grad_y.dtype))
    return scatter_windows(parts, slices, padded.shape, window)


def avg_pool2d(x, kernel_size, stride=None, padding=0):
    """y = mean over each kh x kw window; the zero padding counts in the mean (as in PyTorch).

    x: (N, C, H, W) -> y: (N, C, OH, OW). Cache: (padded shape, slices, window).
    """
    window = pool_window(kernel_size, stride, padding)
    padded, slices = window_slices(x, window, 0.0, "avg_pool2d")
    total = padded[:, :, slices[0][0], slices[0][1]]
    for rows, columns in slices[1:]:
        total = total + padded[:, :, rows, columns]
    return total / len(slices), (padded.shape, slices, window)


def avg_pool2d_backward(cache, grad_y):
    # dy/dx = 1 / (kh kw) for every pixel of the window
    padded_shape, slices, window = cache
    share = grad_y / len(slices)
    return scatter_windows([share] * len(slices), slices, padded_shape, window)
