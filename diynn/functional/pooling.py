"""Max and average pooling of (N, C, H, W) images as functional pairs.

Each window offset (i, j) of a kh x kw kernel is one strided slice of the padded input,
x[..., i::sh, j::sw], of the output's shape; pooling combines the kh kw slices elementwise and the
backward adds each slice's share of the gradient back with a strided slice-add.
"""

from __future__ import annotations

import math
from typing import NamedTuple

from .. import arguments
from ..backends import backend_of, kernel, parallel_range
from ..checks import check_gradient, check_input
from .geometry import crop, output_size, pad2d
from .selection import Family, Implementation, compiles


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


def pooled_size(x, window: Window, name) -> tuple[int, int]:
    """(OH, OW) of pooling x (N, C, H, W), with a clear error for another shape or a too-small image."""
    check_input(x, ndim=4, name=name)
    height, width = x.shape[2:]
    oh, ow = (output_size(s, k, st, p) for s, k, st, p in zip((height, width), *window))
    if oh < 1 or ow < 1:
        raise ValueError(f"{name}: input {height}x{width} is smaller than the kernel {window.kernel}")
    return oh, ow


def window_slices(x, window: Window, pad_value, name):
    """x padded with `pad_value`, and the kh kw (rows, columns) slices of it, one per kernel offset."""
    oh, ow = pooled_size(x, window, name)
    (kh, kw), (sh, sw), _ = window
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


class MaxPoolCache(NamedTuple):
    """The portable max-pool's: the padded input (-inf border), the output, the window slices."""

    padded: object
    y: object
    slices: list
    window: Window


def max_pool2d(x, kernel_size, stride=None, padding=0):
    """y = max over each kh x kw window of x, the padding -inf.

    Args:
        x: (N, C, H, W) input.
        kernel_size: kh = kw, or a (kh, kw) pair.
        stride: an int or a pair; None (default): the kernel size.
        padding: an int or a pair, each at most half the kernel.

    Returns:
        (y, cache): y (N, C, OH, OW) of x's dtype, OH = (H + 2 ph - kh) // sh + 1 (OW likewise);
            the cache for `max_pool2d_backward`, of the type of the implementation MAX_POOL2D chose
            (compiled kernels where they are on).

    Raises:
        ValueError: x is not 4-D, padding over half the kernel, or an image smaller than the kernel.
    """
    window = pool_window(kernel_size, stride, padding)
    backend = backend_of(x)
    return MAX_POOL2D.choose(backend).run(backend, x, window)


def max_pool2d_backward(cache, grad_y):
    """The gradient of `max_pool2d`.

    Each window's gradient goes to its first maximum among the input's pixels (never to the padding,
    also when a whole window is -inf: as in PyTorch), and adds up where windows overlap; pixels in
    no window get 0.

    Args:
        cache: the cache `max_pool2d` returned.
        grad_y: dL/dy (N, C, OH, OW), of y's dtype.

    Returns:
        grad_x: dL/dx (N, C, H, W).
    """
    # dy/dx = 1 at the window's first maximum, 0 elsewhere
    return MAX_POOL2D.backward_of(cache)(cache, grad_y)


def _max_pool2d_portable(backend, x, window):
    xp = backend.xp
    padded, slices = window_slices(x, window, -math.inf, "max_pool2d")
    y = padded[:, :, slices[0][0], slices[0][1]]
    for rows, columns in slices[1:]:
        y = xp.maximum(y, padded[:, :, rows, columns])
    return y, MaxPoolCache(padded, y, slices, window)


def _max_pool2d_backward_portable(cache, grad_y):
    padded, y, slices, window = cache
    check_gradient(grad_y, y.shape, y.dtype, "max_pool2d_backward")
    xp = backend_of(grad_y).xp
    inside = None
    if any(window.padding):  # where the padded image is the input, not its -inf border
        height, width = padded.shape[2:]
        (ph, pw) = window.padding
        inside = xp.zeros((1, 1, height, width), dtype=xp.bool, device=y.device)
        inside[:, :, ph : height - ph, pw : width - pw] = True
    owner = xp.full(y.shape, -1, dtype=xp.int32, device=y.device)  # the window position taking the gradient
    for k, (rows, columns) in enumerate(slices):
        part = padded[:, :, rows, columns]
        first = (part == y) & (owner < 0)
        if inside is not None:
            first &= inside[:, :, rows, columns]
        # a window holding NaN (y is NaN there) gives its gradient to its last NaN, as the compiled
        # kernels and PyTorch do
        owner = xp.where(first | (part != part), xp.asarray(k, dtype=xp.int32, device=y.device), owner)
    parts = [grad_y * xp.astype(owner == k, grad_y.dtype) for k in range(len(slices))]
    return scatter_windows(parts, slices, padded.shape, window)


# Compiled CPU path (numba, see backends.cpu_kernels): one image plane per iteration of the parallel
# loop; the forward keeps the index of each window's first maximum in its plane, the backward
# adds each output's gradient there. The padding is never read: a window covers only the pixels
# inside the image.


class CompiledMaxPoolCache(NamedTuple):
    """The compiled max-pool's cache: argmax (N C, OH, OW) int32 index of each window's maximum in
    its (H, W) plane, the input's shape and dtype."""

    argmax: object
    input_shape: tuple
    dtype: object


@kernel
def _max_pool_planes(x3, geometry, y3, argmax):
    """y3[p, r, q] = max of x3[p] (P, H, W) over window (r, q), argmax its first index in the plane
    (a NaN wins, as in the portable maximum). geometry: (kh, kw, sh, sw, ph, pw)."""
    kh, kw, sh, sw, ph, pw = geometry
    height, width = x3.shape[1], x3.shape[2]
    for p in parallel_range(x3.shape[0]):
        plane = x3[p]
        for r in range(y3.shape[1]):
            top, bottom = max(r * sh - ph, 0), min(r * sh - ph + kh, height)
            for q in range(y3.shape[2]):
                left, right = max(q * sw - pw, 0), min(q * sw - pw + kw, width)
                best, where = plane[top, left], top * width + left
                for i in range(top, bottom):
                    for j in range(left, right):
                        value = plane[i, j]
                        if value > best or value != value:
                            best, where = value, i * width + j
                y3[p, r, q] = best
                argmax[p, r, q] = where


@kernel
def _max_pool_2x2_planes(x3, y3, argmax):
    """`_max_pool_planes` for the CNN's 2x2 windows with stride 2 and no padding, unrolled (the
    loops over a window whose size is known only at run time do not vectorise: 8x slower)."""
    width = x3.shape[2]
    for p in parallel_range(x3.shape[0]):
        plane = x3[p]
        for r in range(y3.shape[1]):
            for q in range(y3.shape[2]):
                i, j = 2 * r, 2 * q
                best, where = plane[i, j], i * width + j
                value = plane[i, j + 1]
                if value > best or value != value:
                    best, where = value, i * width + j + 1
                value = plane[i + 1, j]
                if value > best or value != value:
                    best, where = value, (i + 1) * width + j
                value = plane[i + 1, j + 1]
                if value > best or value != value:
                    best, where = value, (i + 1) * width + j + 1
                y3[p, r, q] = best
                argmax[p, r, q] = where


@kernel
def _max_pool_backward_planes(grad_y3, argmax, grad_x2):
    """grad_x2 (P, H W) = each output gradient added at its window's maximum."""
    for p in parallel_range(grad_x2.shape[0]):
        grad_x2[p] = 0
        for r in range(grad_y3.shape[1]):
            for q in range(grad_y3.shape[2]):
                grad_x2[p, argmax[p, r, q]] += grad_y3[p, r, q]


def _max_pool2d_compiled(backend, x, window):
    xp = backend.xp
    oh, ow = pooled_size(x, window, "max_pool2d")
    n, channels, height, width = x.shape
    (kh, kw), (sh, sw), (ph, pw) = window
    y = xp.empty((n, channels, oh, ow), dtype=x.dtype)
    argmax = xp.empty((n * channels, oh, ow), dtype=xp.int32)
    x3, y3 = xp.reshape(x, (-1, height, width)), xp.reshape(y, (-1, oh, ow))
    if window == ((2, 2), (2, 2), (0, 0)):
        backend.compiled(_max_pool_2x2_planes)(x3, y3, argmax)
    else:
        backend.compiled(_max_pool_planes)(x3, (kh, kw, sh, sw, ph, pw), y3, argmax)
    return y, CompiledMaxPoolCache(argmax, x.shape, x.dtype)


def _max_pool2d_backward_compiled(cache, grad_y):
    n, channels, height, width = cache.input_shape
    check_gradient(grad_y, (n, channels, *cache.argmax.shape[1:]), cache.dtype, "max_pool2d_backward")
    backend = backend_of(grad_y)
    xp = backend.xp
    grad_x = xp.empty(cache.input_shape, dtype=grad_y.dtype)
    grad_y3 = xp.reshape(grad_y, cache.argmax.shape)
    backend.compiled(_max_pool_backward_planes)(grad_y3, cache.argmax, xp.reshape(grad_x, (n * channels, -1)))
    return grad_x


def select_max_pool2d(backend) -> str:
    """The compiled kernels where they are on, else the portable slices."""
    return "compiled" if backend.compiles_kernels else "portable"


MAX_POOL2D = Family(
    "max_pool2d",
    select_max_pool2d,
    {
        "compiled": Implementation(_max_pool2d_compiled, _max_pool2d_backward_compiled, CompiledMaxPoolCache, compiles),
        "portable": Implementation(_max_pool2d_portable, _max_pool2d_backward_portable, MaxPoolCache),
    },
)


def avg_pool2d(x, kernel_size, stride=None, padding=0):
    """y = mean over each kh x kw window of x; the zero padding counts in the mean (as in PyTorch).

    Args:
        x: (N, C, H, W) input.
        kernel_size: kh = kw, or a (kh, kw) pair.
        stride: an int or a pair; None (default): the kernel size.
        padding: an int or a pair, each at most half the kernel.

    Returns:
        (y, cache): y (N, C, OH, OW) of x's dtype, OH = (H + 2 ph - kh) // sh + 1 (OW likewise);
            the cache for `avg_pool2d_backward`: (padded shape, slices, window, y's shape and dtype).

    Raises:
        ValueError: x is not 4-D, padding over half the kernel, or an image smaller than the kernel.
    """
    window = pool_window(kernel_size, stride, padding)
    padded, slices = window_slices(x, window, 0.0, "avg_pool2d")
    total = padded[:, :, slices[0][0], slices[0][1]]
    for rows, columns in slices[1:]:
        total = total + padded[:, :, rows, columns]
    y = total / len(slices)
    return y, (padded.shape, slices, window, y.shape, y.dtype)


def avg_pool2d_backward(cache, grad_y):
    """The gradient of `avg_pool2d`: each window's gradient shared equally among its kh kw pixels.

    Shares add up where windows overlap; pixels in no window (stride larger than the kernel, or a
    remainder) get 0.

    Args:
        cache: the cache `avg_pool2d` returned.
        grad_y: dL/dy (N, C, OH, OW), of y's dtype.

    Returns:
        grad_x: dL/dx (N, C, H, W).
    """
    # dy/dx = 1 / (kh kw) for every pixel of the window
    padded_shape, slices, window, shape, dtype = cache
    check_gradient(grad_y, shape, dtype, "avg_pool2d_backward")
    share = grad_y / len(slices)
    return scatter_windows([share] * len(slices), slices, padded_shape, window)
