"""The depthwise convolution on compiled CPU kernels (conv2d's "depthwise" implementation): each
output channel o is the 2-D correlation of one input channel, o // m, with its own kernel (groups =
C, weight (O, 1, kh, kw), m = O / C), written as loops over the taps. A depthwise layer has too
little arithmetic per window for an im2col product to pay for building the columns.

    y[n, o, i, j] = b[o] + sum_{p, q} w[o, 0, p, q] x[n, o // m, s_h i - p_h + d_h p, s_w j - p_w + d_w q]

The kernels compute the stride-1 convolution, each plane in a "wide" layout: the input plane padded
(Hp, Wp) and the output's rows Wp apart, (OH, Wp), the last (kw - 1) d_w entries of each row unused.
Tap (p, q) is then one run over the flattened planes, out[k] += w[p, q] padded[k + p d_h Wp + q d_w],
long enough for vector instructions (a row alone, OW long, is not); the kernels index a slice
from k = 0 so that the compiler sees no negative index. A strided convolution is every s-th row and
column of the stride-1 one (its backward puts dL/dy there and zeros between): s_h s_w times the
arithmetic, which at stride 2 still runs level with loops along strided rows (128 x 32 x 28 x 28,
forward + backward at 1 thread: 20.3 against 20.8 ms); larger strides are left to the grouped im2col.
"""

from typing import NamedTuple

from ..backends import chunk_bounds, kernel, kernel_threads, parallel_range
from .geometry import output_size


class DepthwiseCache(NamedTuple):
    """What the backward needs: the input x (N, C, H, W), the weight (O, 1, kh, kw), whether there
    was a bias, (padding, dilation) as (ph, pw, dh, dw), the stride, and y's shape."""

    x: object
    weight: object
    has_bias: bool
    geometry: tuple
    stride: tuple[int, int]
    output_shape: tuple


def depthwise_serves(backend, x, weight, stride, padding, output_shape, dilation, groups) -> bool:
    """Whether the depthwise kernels compute a conv2d call: compiled kernels, one group per input
    channel, strides of at most 2."""
    depthwise = groups > 1 and groups == x.shape[1] and weight.shape[1] == 1
    return backend.compiles_kernels and depthwise and max(stride) <= 2


def conv2d_depthwise(backend, x, weight, bias, stride, padding, output_shape, dilation, groups):
    xp = backend.xp
    x, weight = xp.ascontiguousarray(x), xp.ascontiguousarray(weight)  # one compiled signature
    geometry = (*padding, *dilation)
    y = xp.empty((x.shape[0], weight.shape[0], *_stride_one_shape(x.shape, weight.shape, geometry)), dtype=x.dtype)
    bias_or_zero = bias if bias is not None else xp.zeros(weight.shape[0], dtype=x.dtype)
    bounds = chunk_bounds(y.shape[0] * y.shape[1], kernel_threads())
    padded, wide = _planes(xp, bounds, x.shape, y.shape, geometry, x.dtype)
    backend.compiled(_depthwise_planes)(x, weight, bias_or_zero, geometry, bounds, padded, wide, y)
    if tuple(stride) != (1, 1):
        y = xp.ascontiguousarray(y[:, :, :: stride[0], :: stride[1]])
    return y, DepthwiseCache(x, weight, bias is not None, geometry, tuple(stride), y.shape)


def conv2d_backward_depthwise(backend, cache, grad_y, input_grad, param_grads):
    # dL/dx: each output gradient spread back through its taps (the forward's adjoint);
    # dL/dw[o, 0, p, q] = sum_{n, i, j} dL/dy[n, o, i, j] x[n, o // m, window (i, j)'s tap (p, q)]
    xp, x, weight, geometry = backend.xp, cache.x, cache.weight, cache.geometry
    if cache.stride == (1, 1):
        grad = xp.ascontiguousarray(grad_y)
    else:  # the stride-1 convolution's gradient: dL/dy where it was kept, else 0
        grad = xp.zeros((*grad_y.shape[:2], *_stride_one_shape(x.shape, weight.shape, geometry)), dtype=grad_y.dtype)
        grad[:, :, :: cache.stride[0], :: cache.stride[1]] = grad_y
    grad_x = grad_weight = grad_bias = None
    if input_grad:
        grad_x = xp.empty(x.shape, dtype=grad_y.dtype)
        bounds = chunk_bounds(x.shape[0] * x.shape[1], kernel_threads())
        padded, wide = _planes(xp, bounds, x.shape, grad.shape, geometry, grad.dtype)
        backend.compiled(_depthwise_input_grad)(grad, weight, geometry, bounds, padded, wide, grad_x)
    if param_grads:
        grad_weight = xp.empty(weight.shape, dtype=grad_y.dtype)
        bounds = chunk_bounds(weight.shape[0], kernel_threads())
        padded, wide = _planes(xp, bounds, x.shape, grad.shape, geometry, grad.dtype)
        backend.compiled(_depthwise_weight_grad)(grad, x, geometry, bounds, padded, wide, grad_weight)
        grad_bias = xp.sum(grad_y, axis=(0, 2, 3)) if cache.has_bias else None
    return grad_x, grad_weight, grad_bias


def _stride_one_shape(input_shape, weight_shape, geometry):
    """(OH, OW) of the stride-1 convolution."""
    ph, pw, dh, dw = geometry
    return (
        output_size(input_shape[2], dh * (weight_shape[2] - 1) + 1, 1, ph),
        output_size(input_shape[3], dw * (weight_shape[3] - 1) + 1, 1, pw),
    )


def _planes(xp, bounds, input_shape, output_shape, geometry, dtype):
    """Each thread's padded input plane (Hp Wp) and wide output plane (OH Wp), flattened."""
    threads, (ph, pw) = len(bounds) - 1, geometry[:2]
    padded_width = input_shape[3] + 2 * pw
    padded = xp.empty((threads, (input_shape[2] + 2 * ph) * padded_width), dtype=dtype)
    return padded, xp.empty((threads, output_shape[2] * padded_width), dtype=dtype)


@kernel
def _pad_plane(plane, ph, pw, padded):
    """padded (Hp Wp,) = plane (H, W) with a zero border ph rows and pw columns wide."""
    height, width = plane.shape
    padded_width = width + 2 * pw
    padded[:] = 0
    for r in range(height):
        start = (r + ph) * padded_width + pw
        padded[start : start + width] = plane[r]


@kernel
def _widen(plane, padded_width, wide):
    """wide (OH Wp,) = plane (OH, OW) with its rows padded_width apart, zeros between them."""
    wide[:] = 0
    for i in range(plane.shape[0]):
        wide[i * padded_width : i * padded_width + plane.shape[1]] = plane[i]


@kernel
def _narrow(wide, padded_width, ph, pw, plane):
    """plane (H, W) = the entries of wide (flattened rows padded_width apart) from row ph, column pw."""
    for r in range(plane.shape[0]):
        start = (r + ph) * padded_width + pw
        plane[r] = wide[start : start + plane.shape[1]]


@kernel(contract=True)
def _depthwise_planes(x, weight, bias, geometry, bounds, padded, wide, y):
    """y (N, O, OH, OW), stride 1: thread t's (image, output channel) planes bounds[t]..bounds[t + 1]."""
    ph, pw, dh, dw = geometry
    out_channels, oh, ow = y.shape[1], y.shape[2], y.shape[3]
    kh, kw, multiplier = weight.shape[2], weight.shape[3], out_channels // x.shape[1]
    padded_width = x.shape[3] + 2 * pw
    length = (oh - 1) * padded_width + ow  # the wide plane up to its last output
    for t in parallel_range(len(bounds) - 1):
        source, out = padded[t], wide[t]
        for plane in range(bounds[t], bounds[t + 1]):
            n, o = plane // out_channels, plane % out_channels
            _pad_plane(x[n, o // multiplier], ph, pw, source)
            out[:] = bias[o]
            for p in range(kh):
                for q in range(kw):
                    tap, start = weight[o, 0, p, q], p * dh * padded_width + q * dw
                    window = source[start : start + length]
                    for k in range(length):
                        out[k] += tap * window[k]
            _narrow(out, padded_width, 0, 0, y[n, o])


@kernel(contract=True)
def _depthwise_input_grad(grad_y, weight, geometry, bounds, padded, wide, grad_x):
    """grad_x (N, C, H, W) from dL/dy of the stride-1 convolution: thread t's (image, input channel)
    planes bounds[t]..bounds[t + 1], each from its m output channels."""
    ph, pw, dh, dw = geometry
    channels, oh, ow = grad_x.shape[1], grad_y.shape[2], grad_y.shape[3]
    kh, kw, multiplier = weight.shape[2], weight.shape[3], grad_y.shape[1] // channels
    padded_width = grad_x.shape[3] + 2 * pw
    length = (oh - 1) * padded_width + ow
    for t in parallel_range(len(bounds) - 1):
        sums, grad = padded[t], wide[t]
        for plane in range(bounds[t], bounds[t + 1]):
            n, c = plane // channels, plane % channels
            sums[:] = 0
            for o in range(c * multiplier, (c + 1) * multiplier):
                _widen(grad_y[n, o], padded_width, grad)
                for p in range(kh):
                    for q in range(kw):
                        tap, start = weight[o, 0, p, q], p * dh * padded_width + q * dw
                        window = sums[start : start + length]
                        for k in range(length):
                            window[k] += tap * grad[k]
            _narrow(sums, padded_width, ph, pw, grad_x[n, c])


@kernel(reassociate=True)
def _depthwise_weight_grad(grad_y, x, geometry, bounds, padded, wide, grad_weight):
    """grad_weight (O, 1, kh, kw) from dL/dy of the stride-1 convolution: thread t's output
    channels bounds[t]..bounds[t + 1], each summed over the images (the sums in any order: vectors)."""
    ph, pw, dh, dw = geometry
    images, out_channels, oh, ow = grad_y.shape
    kh, kw, multiplier = grad_weight.shape[2], grad_weight.shape[3], out_channels // x.shape[1]
    padded_width = x.shape[3] + 2 * pw
    length = (oh - 1) * padded_width + ow
    for t in parallel_range(len(bounds) - 1):
        source, grad = padded[t], wide[t]
        for o in range(bounds[t], bounds[t + 1]):
            totals = grad_weight[o, 0]
            totals[:] = 0
            for n in range(images):
                _pad_plane(x[n, o // multiplier], ph, pw, source)
                _widen(grad_y[n, o], padded_width, grad)
                for p in range(kh):
                    for q in range(kw):
                        total, start = totals[p, q], p * dh * padded_width + q * dw
                        window = source[start : start + length]
                        for k in range(length):
                            total += grad[k] * window[k]
                        totals[p, q] = total
