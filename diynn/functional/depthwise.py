"""The depthwise convolution on compiled CPU kernels (conv2d's "depthwise" implementation): each
output channel o is the 2-D correlation of one input channel, o // m, with its own kernel (groups =
C, weight (O, 1, kh, kw), m = O / C), written as loops over the taps. A depthwise layer has too
little arithmetic per window for an im2col product to pay for building the columns.

    y[n, o, i, j] = b[o] + sum_{p, q} w[o, 0, p, q] x[n, o // m, s_h i - p_h + d_h p, s_w j - p_w + d_w q]
"""

from typing import NamedTuple

from ..backends import kernel, parallel_range


class DepthwiseCache(NamedTuple):
    """What the backward needs: the input x (N, C, H, W), the weight (O, 1, kh, kw), whether there
    was a bias, (stride, padding, dilation) as (sh, sw, ph, pw, dh, dw), and y's shape."""

    x: object
    weight: object
    has_bias: bool
    geometry: tuple
    output_shape: tuple


def depthwise_serves(backend, x, weight, stride, padding, output_shape, dilation, groups) -> bool:
    """Whether the depthwise kernels compute a conv2d call: compiled kernels, one group per input channel."""
    return backend.compiles_kernels and groups > 1 and groups == x.shape[1] and weight.shape[1] == 1


def conv2d_depthwise(backend, x, weight, bias, stride, padding, output_shape, dilation, groups):
    xp = backend.xp
    x, weight = xp.ascontiguousarray(x), xp.ascontiguousarray(weight)  # one compiled signature
    geometry = (*stride, *padding, *dilation)
    y = xp.empty((x.shape[0], weight.shape[0], *output_shape), dtype=x.dtype)
    bias_or_zero = bias if bias is not None else xp.zeros(weight.shape[0], dtype=x.dtype)
    backend.compiled(_depthwise_planes)(x, weight, bias_or_zero, geometry, y)
    return y, DepthwiseCache(x, weight, bias is not None, geometry, y.shape)


def conv2d_backward_depthwise(backend, cache, grad_y, input_grad, param_grads):
    # dL/dx: each output gradient spread back through its taps (the forward's adjoint);
    # dL/dw[o, 0, p, q] = sum_{n, i, j} dL/dy[n, o, i, j] x[n, o // m, window (i, j)'s tap (p, q)]
    xp = backend.xp
    grad_y = xp.ascontiguousarray(grad_y)
    grad_x = grad_weight = grad_bias = None
    if input_grad:
        grad_x = xp.empty(cache.x.shape, dtype=grad_y.dtype)
        backend.compiled(_depthwise_input_grad)(grad_y, cache.weight, cache.geometry, grad_x)
    if param_grads:
        grad_weight = xp.zeros(cache.weight.shape, dtype=grad_y.dtype)
        backend.compiled(_depthwise_weight_grad)(grad_y, cache.x, cache.geometry, grad_weight)
        grad_bias = xp.sum(grad_y, axis=(0, 2, 3)) if cache.has_bias else None
    return grad_x, grad_weight, grad_bias


@kernel
def _columns_inside(q, geometry, width, output_width):
    """(j0, j1): the output columns j whose tap column q reads inside the image, s_w j - p_w + d_w q in [0, width)."""
    _, sw, _, pw, _, dw = geometry
    low, high = pw - q * dw, width - 1 + pw - q * dw
    if high < 0:
        return 0, 0
    first = 0 if low <= 0 else (low + sw - 1) // sw
    return first, min(output_width, high // sw + 1)


@kernel
def _depthwise_planes(x, weight, bias, geometry, y):
    """y (N, O, OH, OW): one (image, output channel) plane per iteration, tap by tap."""
    sh, sw, ph, pw, dh, dw = geometry
    images, out_channels, oh, ow = y.shape
    height, width, kh, kw = x.shape[2], x.shape[3], weight.shape[2], weight.shape[3]
    multiplier = out_channels // x.shape[1]
    for plane in parallel_range(images * out_channels):
        n, o = plane // out_channels, plane % out_channels
        image, out = x[n, o // multiplier], y[n, o]
        out[:] = bias[o]
        for p in range(kh):
            for q in range(kw):
                tap, (j0, j1) = weight[o, 0, p, q], _columns_inside(q, geometry, width, ow)
                for i in range(oh):
                    r = i * sh - ph + p * dh
                    if 0 <= r < height:
                        for j in range(j0, j1):
                            out[i, j] += tap * image[r, j * sw - pw + q * dw]


@kernel
def _depthwise_input_grad(grad_y, weight, geometry, grad_x):
    """grad_x (N, C, H, W): one (image, input channel) plane per iteration, from its m output channels."""
    sh, sw, ph, pw, dh, dw = geometry
    images, channels, height, width = grad_x.shape
    out_channels, oh, ow = grad_y.shape[1], grad_y.shape[2], grad_y.shape[3]
    kh, kw, multiplier = weight.shape[2], weight.shape[3], out_channels // channels
    for plane in parallel_range(images * channels):
        n, c = plane // channels, plane % channels
        out = grad_x[n, c]
        out[:] = 0
        for o in range(c * multiplier, (c + 1) * multiplier):
            grad = grad_y[n, o]
            for p in range(kh):
                for q in range(kw):
                    tap, (j0, j1) = weight[o, 0, p, q], _columns_inside(q, geometry, width, ow)
                    for i in range(oh):
                        r = i * sh - ph + p * dh
                        if 0 <= r < height:
                            for j in range(j0, j1):
                                out[r, j * sw - pw + q * dw] += tap * grad[i, j]


@kernel
def _depthwise_weight_grad(grad_y, x, geometry, grad_weight):
    """grad_weight (O, 1, kh, kw), zeros on entry: one output channel per iteration, summed over the images."""
    sh, sw, ph, pw, dh, dw = geometry
    images, out_channels, oh, ow = grad_y.shape
    height, width, kh, kw = x.shape[2], x.shape[3], grad_weight.shape[2], grad_weight.shape[3]
    multiplier = out_channels // x.shape[1]
    for o in parallel_range(out_channels):
        for p in range(kh):
            for q in range(kw):
                total, (j0, j1) = grad_weight[o, 0, p, q], _columns_inside(q, geometry, width, ow)
                for n in range(images):
                    image, grad = x[n, o // multiplier], grad_y[n, o]
                    for i in range(oh):
                        r = i * sh - ph + p * dh
                        if 0 <= r < height:
                            for j in range(j0, j1):
                                total += grad[i, j] * image[r, j * sw - pw + q * dw]
                grad_weight[o, 0, p, q] = total
