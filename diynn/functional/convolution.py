"""Convolutions and transposed convolutions as functional pairs, each with its implementations
behind one selection (CONV2D and select_conv2d, CONV_TRANSPOSE2D and select_conv_transpose2d; see
selection.py): cuDNN on CuPy; on compiled CPU kernels Winograd's F(2x2, 3x3) (winograd.py) or im2col
split over the CPU's threads; and the portable im2col + one matrix product they are tested against.
Dilated convolutions with stride 1 run as plain ones on the input's interleaved sub-images
("phases"), depthwise ones on compiled kernels of their own (depthwise.py), any other geometry as
the portable grouped im2col.

Images are (N, C, H, W). The compiled CPU path gives each thread a chunk of images (see the comment
above `_conv2d_chunks`). The portable path works channel-major, (C, N, H, W), so that the im2col
matrix is (C kh kw, N OH OW) and one GEMM with the (O, C kh kw) weight gives the output; a
convolution of one-channel images works batch-major instead (see `_conv2d_one_channel`). The
transposed convolution runs the same products in another order: cuDNN's three graphs, or the
compiled path's two kernels with their roles swapped.
"""

from __future__ import annotations

import functools
from typing import NamedTuple

from .. import arguments
from ..backends import backend_of, blas_gemm, chunk_bounds, kernel, kernel_threads, matmul_into, parallel_range
from ..checks import check_gradient, check_input, check_weighted
from . import winograd
from .depthwise import DepthwiseCache, conv2d_backward_depthwise, conv2d_depthwise, depthwise_serves
from .geometry import crop, from_phases, output_size, pad2d, pad_channel_major, to_batch_major, to_phases
from .selection import Family, Implementation, compiles

# from this many output positions per image, the compiled path multiplies image by image, reading
# and writing the (N, O, OH OW) arrays in place, instead of one product per chunk with the output
# (gradient) scattered (gathered) around it (conv1, 28x28 outputs, forward + backward at batch 128:
# 3.10 -> 1.87 ms; 7x7 outputs are faster with one product per chunk, 14x14 the same either way)
PER_IMAGE_POSITIONS = 256


class ChannelMajorCache(NamedTuple):
    """The portable path's: cols (C kh kw, N OH OW), the im2col windows of the channel-major padded
    input, whose shape (C, N, H + 2 ph, W + 2 pw) is padded_shape."""

    cols: object
    weight: object
    has_bias: bool
    padded_shape: tuple
    stride: tuple[int, int]
    padding: tuple[int, int]
    output_shape: tuple


class OneChannelCache(ChannelMajorCache):
    """The one-channel path's, with the same fields: cols (N, kh kw, OH OW), each image's windows;
    padded_shape (N, 1, H + 2 ph, W + 2 pw)."""


class CompiledConvCache(NamedTuple):
    """The compiled path's: chunks, each thread's im2col windows with their bounds and geometry
    (see `_forward_chunks`), and the input's shape (N, C, H, W)."""

    chunks: tuple
    weight: object
    has_bias: bool
    input_shape: tuple
    output_shape: tuple


class WinogradCache(NamedTuple):
    """Winograd's: tiles, what winograd.conv2d_backward needs (the input and the filter tiles)."""

    tiles: tuple
    weight: object
    has_bias: bool
    padding: tuple[int, int]
    output_shape: tuple


class CudnnConvCache(NamedTuple):
    """cuDNN's: the input (C-contiguous) and the graphs built for this geometry."""

    x: object
    graphs: object
    weight: object
    has_bias: bool
    output_shape: tuple


def conv_output_shape(height, width, kernel, stride, padding, name="conv2d"):
    """(OH, OW), with a ValueError naming the sizes where the kernel does not fit."""
    oh, ow = (output_size(s, k, st, p) for s, k, st, p in zip((height, width), kernel, stride, padding))
    if oh < 1 or ow < 1:
        raise ValueError(
            f"{name}: input {height}x{width} with padding {padding} is smaller than the kernel "
            f"{kernel} (output would be {oh}x{ow})"
        )
    return oh, ow


def conv2d(x, weight, bias=None, stride=1, padding=0, dilation=1, groups=1):
    """2-D convolution (cross-correlation, as in PyTorch).

    Args:
        x: (N, C_in, H, W) input, of the weight's dtype.
        weight: (C_out, C_in / groups, kh, kw).
        bias: (C_out,) or None.
        stride: an int or a (sh, sw) pair.
        padding: an int or a (ph, pw) pair of zeros around each image.
        dilation: an int or a (dh, dw) pair: the spacing of the kernel's taps.
        groups: splits the channels into that many independent convolutions (groups = C_in:
            depthwise); it divides C_out, and C_in = groups * weight's axis 1.

    Returns:
        (y, cache): y (N, C_out, OH, OW), OH = (H + 2 ph - dh (kh - 1) - 1) // sh + 1 (OW likewise);
            the cache for `conv2d_backward`, of the type of the implementation CONV2D chose
            (select_conv2d).

    Raises:
        ValueError: shapes that do not fit together (axes, channels, groups), or a kernel larger than
            the padded image.
        TypeError: operands of different backends or dtypes.
    """
    backend = backend_of(x)
    stride, padding = arguments.integer_pair("stride", stride), arguments.integer_pair("padding", padding, minimum=0)
    dilation, groups = arguments.integer_pair("dilation", dilation), arguments.integer("groups", groups)
    _check_groups(x, weight, bias, groups)
    span = [d * (k - 1) + 1 for d, k in zip(dilation, weight.shape[2:])]  # a dilated kernel's extent
    oh, ow = conv_output_shape(*x.shape[2:], span, stride, padding)
    implementation = CONV2D.choose(backend, x, weight, stride, padding, (oh, ow), dilation, groups)
    return implementation.run(backend, x, weight, bias, stride, padding, (oh, ow), dilation, groups)


def _check_groups(x, weight, bias, groups):
    """check_weighted's errors, with the weight's axis 1 the channels of one group."""
    if groups == 1:
        return check_weighted("conv2d", x, weight, bias, ndim=4)
    check_input(weight, ndim=4, name="conv2d's weight")
    out_channels, group_channels = weight.shape[:2]
    if out_channels % groups:
        raise ValueError(f"conv2d: {out_channels} output channels do not split into {groups} groups")
    check_input(x, ndim=4, name="conv2d", sizes={1: group_channels * groups}, like=weight)
    if bias is not None:
        check_input(bias, ndim=1, name="conv2d's bias", sizes={0: out_channels}, like=weight)


def conv2d_backward(cache, grad_y, input_grad=True, param_grads=True):
    """The gradients of `conv2d`.

    Args:
        cache: the cache `conv2d` returned.
        grad_y: dL/dy (N, C_out, OH, OW), of y's dtype.
        input_grad: False skips dL/dx.
        param_grads: False skips dL/dW and dL/db.

    Returns:
        (grad_x, grad_weight, grad_bias): dL/dx (N, C_in, H, W), dL/dW of the weight's shape and
            dL/db (C_out,); None for those not asked for (dL/db also without a bias).
    """
    backward = CONV2D.backward_of(cache)
    check_gradient(grad_y, cache.output_shape, cache.weight.dtype, "conv2d_backward")
    return backward(backend_of(grad_y), cache, grad_y, input_grad, param_grads)


def select_conv2d(backend, x, weight, stride, padding, output_shape, dilation, groups) -> str:
    """Grouped convolutions: the grouped im2col, but the depthwise loops for one group per input
    channel on compiled CPU kernels. Dilated ones with stride 1: plain convolutions of the input's
    interleaved sub-images ("phases"); with larger strides the compiled im2col, which spreads its
    windows by the dilation, or the grouped im2col. Otherwise cuDNN where the backend has it and
    it runs this geometry; on compiled CPU kernels, Winograd's F(2x2, 3x3) for the 3x3 stride-1
    convolutions with enough input channels to pay for its transforms, else the compiled im2col;
    the portable code otherwise, batch-major for one-channel images."""
    if not _plain(dilation, groups):
        facts = (backend, x, weight, stride, padding, output_shape, dilation, groups)
        if depthwise_serves(*facts):
            return "depthwise"
        if _phases_serve(*facts):
            return "phases"
        return "compiled" if _compiled_ungrouped(*facts) else "grouped"
    if _cudnn_runs(backend, x, weight, stride, padding, output_shape):
        return "cudnn"
    if backend.compiles_kernels:
        pays = winograd.serves(weight.shape, stride) and weight.shape[1] >= winograd.SMALLEST_CHANNELS
        return "winograd" if pays else "compiled"
    return "one_channel" if weight.shape[1] == 1 else "channel_major"


# The portable path works channel-major: with Y = W X_cols (the (O, C kh kw) weight times the
# (C kh kw, N OH OW) windows), dL/dW = dY X_cols^T, dL/dX_cols = W^T dY, then col2im sums the windows.


def _conv2d_channel_major(backend, x, weight, bias, stride, padding, output_shape, dilation, groups):
    xp = backend.xp
    out_channels, n = weight.shape[0], x.shape[0]
    padded = pad_channel_major(x, padding)
    cols = backend.im2col(padded, weight.shape[2:], stride)  # (C kh kw, N OH OW)
    y = backend.matmul(xp.reshape(weight, (out_channels, -1)), cols)  # (O, N OH OW)
    if bias is not None:
        y += bias[:, None]
    y = to_batch_major(xp.reshape(y, (out_channels, n, *output_shape)))
    return y, ChannelMajorCache(cols, weight, bias is not None, padded.shape, stride, padding, y.shape)


def _conv2d_backward_channel_major(backend, cache, grad_y, input_grad, param_grads):
    xp, weight = backend.xp, cache.weight
    out_channels = weight.shape[0]
    grad = xp.reshape(xp.permute_dims(grad_y, (1, 0, 2, 3)), (out_channels, -1))  # (O, N OH OW)
    grad_weight = xp.reshape(backend.matmul(grad, cache.cols.T), weight.shape) if param_grads else None
    grad_bias = xp.sum(grad, axis=1) if param_grads and cache.has_bias else None
    if not input_grad:
        return None, grad_weight, grad_bias
    columns = backend.matmul(xp.reshape(weight, (out_channels, -1)).T, grad)
    padded = backend.col2im(columns, cache.padded_shape, weight.shape[2:], cache.stride)
    return xp.permute_dims(crop(padded, cache.padding), (1, 0, 2, 3)), grad_weight, grad_bias


# A first layer on one-channel images has a tiny kh kw inner dimension: its products are cheap
# and the two transposes of the channel-major path (output, output gradient) would cost the most.
# Batch-major instead: each image's windows (kh kw, OH OW) times the (O, kh kw) weight is that
# image's (O, OH OW) output, one batched product, no transposes. The windows come from the same
# im2col with the batch in the channels' place: (N, 1, H, W) -> (N kh kw, OH OW).


def _plain(dilation, groups) -> bool:
    """Whether a convolution has neither dilation nor groups (what every path but "grouped" computes)."""
    return groups == 1 and tuple(dilation) == (1, 1)


def _plain_convolution(backend, x, weight, stride, padding, output_shape, dilation, groups) -> bool:
    return _plain(dilation, groups)


def _compiled_ungrouped(backend, x, weight, stride, padding, output_shape, dilation, groups) -> bool:
    return backend.compiles_kernels and groups == 1  # a dilation only spreads the windows' offsets


def _one_channel(backend, x, weight, stride, padding, output_shape, dilation, groups) -> bool:
    return weight.shape[1] == 1 and _plain(dilation, groups)


def _conv2d_one_channel(backend, x, weight, bias, stride, padding, output_shape, dilation, groups):
    xp = backend.xp
    n, out_channels = x.shape[0], weight.shape[0]
    padded = pad2d(x, padding)  # (N, 1, H + 2 ph, W + 2 pw)
    cols = backend.im2col(padded, weight.shape[2:], stride)  # (N kh kw, OH OW)
    cols = xp.reshape(cols, (n, -1, output_shape[0] * output_shape[1]))  # (N, kh kw, OH OW)
    y = xp.reshape(weight, (out_channels, -1)) @ cols  # (N, O, OH OW)
    if bias is not None:
        y += bias[:, None]
    y = xp.reshape(y, (n, out_channels, *output_shape))
    return y, OneChannelCache(cols, weight, bias is not None, padded.shape, stride, padding, y.shape)


def _conv2d_backward_one_channel(backend, cache, grad_y, input_grad, param_grads):
    xp = backend.xp
    weight = cache.weight
    n, out_channels = grad_y.shape[0], weight.shape[0]
    grad = xp.reshape(grad_y, (n, out_channels, -1))  # (N, O, OH OW)
    grad_weight = grad_bias = None
    if param_grads:  # sum over images of dY_n X_cols_n^T
        per_image = grad @ xp.permute_dims(cache.cols, (0, 2, 1))  # (N, O, kh kw)
        grad_weight = xp.reshape(xp.sum(per_image, axis=0), weight.shape)
        grad_bias = xp.sum(xp.sum(grad, axis=0), axis=-1) if cache.has_bias else None
    if not input_grad:
        return None, grad_weight, grad_bias
    cols = xp.reshape(xp.reshape(weight, (out_channels, -1)).T @ grad, (-1, grad.shape[2]))  # (N kh kw, OH OW)
    padded = backend.col2im(cols, cache.padded_shape, weight.shape[2:], cache.stride)
    return crop(padded, cache.padding), grad_weight, grad_bias


def _conv2d_winograd(backend, x, weight, bias, stride, padding, output_shape, dilation, groups):
    y, tiles = winograd.conv2d(backend, x, weight, bias, padding, output_shape)
    return y, WinogradCache(tiles, weight, bias is not None, padding, y.shape)


def _conv2d_backward_winograd(backend, cache, grad_y, input_grad, param_grads):
    grad_x, grad_weight, grad_bias = winograd.conv2d_backward(
        backend, cache.tiles, cache.padding, grad_y, input_grad, param_grads
    )
    return grad_x, grad_weight, grad_bias if cache.has_bias else None


def _winograd_computes(backend, x, weight, stride, padding, output_shape, dilation, groups) -> bool:
    return backend.compiles_kernels and winograd.serves(weight.shape, stride) and _plain(dilation, groups)


# Dilated and grouped convolutions (portable): the windows are one strided slice of the padded input
# per kernel tap, a tap's rows and columns dilation apart; the channels split into groups, and each
# group's windows (C/G kh kw, OH OW) multiply its (O/G, C/G kh kw) weight, one batched product.
# The backward is that product's adjoint, then each tap's slice added back (col2im).


class GroupedConvCache(NamedTuple):
    """The grouped path's: cols (N, G, C/G kh kw, OH OW), each group's windows of the padded input
    (padded_shape (N, C, H + 2 ph, W + 2 pw))."""

    cols: object
    weight: object
    has_bias: bool
    padded_shape: tuple
    stride: tuple[int, int]
    padding: tuple[int, int]
    dilation: tuple[int, int]
    output_shape: tuple


def _tap_slices(kernel, stride, dilation, output_shape):
    """(rows, columns) of the padded input that tap (i, j) reads for every output position."""
    (kh, kw), (sh, sw), (dh, dw), (oh, ow) = kernel, stride, dilation, output_shape
    return [
        (slice(i * dh, i * dh + sh * (oh - 1) + 1, sh), slice(j * dw, j * dw + sw * (ow - 1) + 1, sw))
        for i in range(kh)
        for j in range(kw)
    ]


def _conv2d_grouped(backend, x, weight, bias, stride, padding, output_shape, dilation, groups):
    xp = backend.xp
    n, (out_channels, group_channels, kh, kw) = x.shape[0], weight.shape
    padded = pad2d(x, padding)
    taps = _tap_slices((kh, kw), stride, dilation, output_shape)
    windows = xp.stack([padded[:, :, rows, columns] for rows, columns in taps], axis=2)  # (N, C, kh kw, OH, OW)
    positions = output_shape[0] * output_shape[1]
    cols = xp.reshape(windows, (n, groups, group_channels * kh * kw, positions))
    y = xp.reshape(weight, (groups, out_channels // groups, -1)) @ cols  # (N, G, O/G, OH OW)
    y = xp.reshape(y, (n, out_channels, *output_shape))
    if bias is not None:
        y += bias[:, None, None]
    cache = GroupedConvCache(cols, weight, bias is not None, padded.shape, stride, padding, dilation, y.shape)
    return y, cache


def _conv2d_backward_grouped(backend, cache, grad_y, input_grad, param_grads):
    # per group, Y = W X_cols: dL/dW = sum_n dY X_cols^T, dL/dX_cols = W^T dY, then the taps added back
    xp, weight, cols = backend.xp, cache.weight, cache.cols
    (n, groups), (out_channels, group_channels, kh, kw) = cols.shape[:2], weight.shape
    grad = xp.reshape(grad_y, (n, groups, out_channels // groups, -1))  # (N, G, O/G, OH OW)
    grad_weight = grad_bias = None
    if param_grads:
        grad_weight = xp.reshape(xp.sum(grad @ xp.matrix_transpose(cols), axis=0), weight.shape)
        grad_bias = xp.sum(grad_y, axis=(0, 2, 3)) if cache.has_bias else None
    if not input_grad:
        return None, grad_weight, grad_bias
    weights = xp.reshape(weight, (groups, out_channels // groups, -1))
    grad_cols = xp.matrix_transpose(weights) @ grad  # (N, G, C/G kh kw, OH OW)
    grad_windows = xp.reshape(grad_cols, (n, groups * group_channels, kh * kw, *cache.output_shape[2:]))
    grad_padded = xp.zeros(cache.padded_shape, dtype=grad_y.dtype, device=grad_y.device)
    for tap, (rows, columns) in enumerate(_tap_slices((kh, kw), cache.stride, cache.dilation, cache.output_shape[2:])):
        grad_padded[:, :, rows, columns] += grad_windows[:, :, tap, ...]
    return crop(grad_padded, cache.padding), grad_weight, grad_bias


# A dilated stride-1 convolution as dh dw plain ones: output row dh r + a reads input rows
# dh (r + i) + a only, so each of the padded input's interleaved sub-images (every dh-th row from
# row a, every dw-th column from column b) convolves with the weight undilated, by the fastest plain
# implementation (Winograd, cuDNN, ...), and the outputs interleave back. The padded input is
# extended with zeros to whole sub-images; the rows and columns that adds to the output are cropped.


class PhasesCache(NamedTuple):
    """The interleaved path's: the plain convolution's cache (its input the sub-images), the
    input's (N, C, H, W) and padding, the dilation, and y's shape."""

    inner: object
    weight: object
    input_shape: tuple
    padding: tuple[int, int]
    dilation: tuple[int, int]
    output_shape: tuple


def _phases_serve(backend, x, weight, stride, padding, output_shape, dilation, groups) -> bool:
    return groups == 1 and tuple(stride) == (1, 1) and tuple(dilation) != (1, 1)


def _conv2d_phases(backend, x, weight, bias, stride, padding, output_shape, dilation, groups):
    (height, width), (dh, dw) = x.shape[2:], dilation
    sub_size = (-(-(height + 2 * padding[0]) // dh), -(-(width + 2 * padding[1]) // dw))  # ceil
    sub_images = to_phases(x, dilation, padding, sub_size)
    inner_shape = (sub_size[0] - weight.shape[2] + 1, sub_size[1] - weight.shape[3] + 1)
    facts = (backend, sub_images, weight, (1, 1), (0, 0), inner_shape, (1, 1), 1)
    plain = CONV2D.implementations[select_conv2d(*facts)]
    y_phases, inner = plain.run(backend, sub_images, weight, bias, (1, 1), (0, 0), inner_shape, (1, 1), 1)
    y = from_phases(y_phases, dilation, (0, 0), (x.shape[0], weight.shape[0], *output_shape))
    return y, PhasesCache(inner, weight, x.shape, tuple(padding), tuple(dilation), y.shape)


def _conv2d_backward_phases(backend, cache, grad_y, input_grad, param_grads):
    # the plain convolutions' backward on dL/dy split the same way (zero past the output's end)
    grad_phases = to_phases(grad_y, cache.dilation, (0, 0), cache.inner.output_shape[2:])
    backward = CONV2D.backward_of(cache.inner)
    grad_sub_images, grad_weight, grad_bias = backward(backend, cache.inner, grad_phases, input_grad, param_grads)
    grad_x = from_phases(grad_sub_images, cache.dilation, cache.padding, cache.input_shape) if input_grad else None
    return grad_x, grad_weight, grad_bias


# cuDNN (CuPy with NVIDIA's cuDNN frontend, see backends/cudnn_graphs.py): the three products
# (forward, weight gradient, input gradient) are cuDNN graphs built once per geometry.


def _cudnn_graphs(backend, input_shape, weight_shape, output_shape, dtype, padding, stride):
    """cuDNN's graphs of the convolution from input_shape to output_shape (built once per
    geometry), or None where the backend has no cuDNN or cuDNN refuses the geometry."""
    library = backend.library("cudnn")
    if library is None:
        return None
    return library.convolution(input_shape, weight_shape, output_shape, dtype, padding, stride)


def _cudnn_runs(backend, x, weight, stride, padding, output_shape, dilation=(1, 1), groups=1) -> bool:
    if not _plain(dilation, groups):
        return False
    y_shape = (x.shape[0], weight.shape[0], *output_shape)
    return _cudnn_graphs(backend, x.shape, weight.shape, y_shape, x.dtype, padding, stride) is not None


def _conv2d_cudnn(backend, x, weight, bias, stride, padding, output_shape, dilation, groups):
    xp = backend.xp
    y_shape = (x.shape[0], weight.shape[0], *output_shape)
    graphs = _cudnn_graphs(backend, x.shape, weight.shape, y_shape, x.dtype, padding, stride)
    x, weight = xp.ascontiguousarray(x), xp.ascontiguousarray(weight)
    y = xp.empty(y_shape, dtype=x.dtype, device=x.device)
    graphs.forward(x, weight, y)
    if bias is not None:
        y += bias[:, None, None]
    return y, CudnnConvCache(x, graphs, weight, bias is not None, y.shape)


def _backward_cudnn(backend, cache, grad_y, input_grad, param_grads, transposed=False):
    """The gradients from cuDNN's graphs. A convolution x -> y: dL/dW from (x, dY), dL/dx its
    input gradient of dY. A transposed convolution is the input gradient of the convolution y -> x,
    so dL/dW is that convolution's weight gradient of (dY, x) and dL/dx its forward of dY."""
    xp, x, graphs = backend.xp, cache.x, cache.graphs
    grad_y = xp.ascontiguousarray(grad_y)
    grad_weight = grad_bias = grad_x = None
    if param_grads:
        grad_weight = xp.empty_like(cache.weight)
        graphs.backward_filter(*((grad_y, x) if transposed else (x, grad_y)), grad_weight)
        grad_bias = xp.sum(grad_y, axis=(0, 2, 3)) if cache.has_bias else None
    if input_grad:
        grad_x = xp.empty_like(x)
        (graphs.forward if transposed else graphs.backward_data)(grad_y, cache.weight, grad_x)
    return grad_x, grad_weight, grad_bias


class TransposedChannelMajorCache(NamedTuple):
    """The portable path's: x_rows (C_in, N H W), the channel-major input; full_shape (C_out, N,
    FH, FW), the output before its padding is cropped."""

    x_rows: object
    weight: object
    has_bias: bool
    full_shape: tuple
    stride: tuple[int, int]
    padding: tuple[int, int]
    output_shape: tuple


class TransposedCompiledCache(NamedTuple):
    """The compiled path's: the input as x3 (N, C_in, H W), the geometry and window offsets."""

    x3: object
    geometry: tuple
    offsets: object
    weight: object
    has_bias: bool
    output_shape: tuple


class TransposedCudnnCache(CudnnConvCache):
    """cuDNN's, with the same fields: the input and the graphs of the convolution from y to x."""


def conv_transpose2d(x, weight, bias=None, stride=1, padding=0, output_padding=0):
    """Transposed convolution (the adjoint of conv2d), for upsampling in decoders.

    Args:
        x: (N, C_in, H, W) input, of the weight's dtype.
        weight: (C_in, C_out, kh, kw), as in PyTorch.
        bias: (C_out,) or None.
        stride: an int or a (sh, sw) pair.
        padding: an int or a (ph, pw) pair, cropped from each side of the output.
        output_padding: an int or a pair, smaller than the stride: rows and columns added at the
            bottom and right of the output, which no input reaches.

    Returns:
        (y, cache): y (N, C_out, OH, OW), OH = (H - 1) sh - 2 ph + kh + output_padding (OW likewise);
            the cache for `conv_transpose2d_backward`, of the type of the implementation
            CONV_TRANSPOSE2D chose (select_conv_transpose2d).

    Raises:
        ValueError: shapes that do not fit together (axes, channels), or an output_padding not
            smaller than the stride.
        TypeError: operands of different backends or dtypes.
    """
    backend = backend_of(x)
    stride, padding = arguments.integer_pair("stride", stride), arguments.integer_pair("padding", padding, minimum=0)
    output_padding = arguments.integer_pair("output_padding", output_padding, minimum=0)
    if any(extra >= step for extra, step in zip(output_padding, stride)):  # as PyTorch: col2im assumes it
        raise ValueError(f"conv_transpose2d: output_padding {output_padding} must be smaller than stride {stride}")
    check_weighted("conv_transpose2d", x, weight, bias, ndim=4, in_axis=0)
    _, out_channels, kh, kw = weight.shape
    n, _, height, width = x.shape
    # output_padding adds rows/columns that no input reaches: extend by whole strides' worth
    full_height = (height - 1) * stride[0] + kh + output_padding[0]
    full_width = (width - 1) * stride[1] + kw + output_padding[1]
    full_shape = (out_channels, n, full_height, full_width)
    y_shape = (n, out_channels, full_height - 2 * padding[0], full_width - 2 * padding[1])
    implementation = CONV_TRANSPOSE2D.choose(backend, x, weight, stride, padding, y_shape)
    return implementation.run(backend, x, weight, bias, stride, padding, y_shape, full_shape)


def conv_transpose2d_backward(cache, grad_y, input_grad=True, param_grads=True):
    """The gradients of `conv_transpose2d`.

    Args:
        cache: the cache `conv_transpose2d` returned.
        grad_y: dL/dy (N, C_out, OH, OW), of y's dtype.
        input_grad: False skips dL/dx.
        param_grads: False skips dL/dW and dL/db.

    Returns:
        (grad_x, grad_weight, grad_bias): dL/dx (N, C_in, H, W), dL/dW (C_in, C_out, kh, kw) and
            dL/db (C_out,); None for those not asked for (dL/db also without a bias).
    """
    backward = CONV_TRANSPOSE2D.backward_of(cache)
    check_gradient(grad_y, cache.output_shape, cache.weight.dtype, "conv_transpose2d_backward")
    return backward(backend_of(grad_y), cache, grad_y, input_grad, param_grads)


def select_conv_transpose2d(backend, x, weight, stride, padding, y_shape) -> str:
    """cuDNN where the backend has it and it runs this geometry, the compiled kernels where they
    are on, else the portable code."""
    if _cudnn_runs_transposed(backend, x, weight, stride, padding, y_shape):
        return "cudnn"
    return "compiled" if backend.compiles_kernels else "channel_major"


# The portable transposed convolution: X -> col2im(W^T X); its adjoint takes dY -> im2col(dY) =
# dCols, then dL/dW = X dCols^T and dL/dX = W dCols.


def _conv_transpose2d_channel_major(backend, x, weight, bias, stride, padding, y_shape, full_shape):
    xp = backend.xp
    in_channels = weight.shape[0]
    x_rows = xp.reshape(xp.permute_dims(x, (1, 0, 2, 3)), (in_channels, -1))  # (C_in, N H W)
    cols = backend.matmul(xp.reshape(weight, (in_channels, -1)).T, x_rows)  # (C_out kh kw, N H W)
    y = crop(backend.col2im(cols, full_shape, weight.shape[2:], stride), padding)
    if bias is not None:
        y += bias[:, None, None, None]
    cache = TransposedChannelMajorCache(x_rows, weight, bias is not None, full_shape, stride, padding, y_shape)
    return to_batch_major(y), cache


def _conv_transpose2d_backward_channel_major(backend, cache, grad_y, input_grad, param_grads):
    xp, weight = backend.xp, cache.weight
    in_channels, n = weight.shape[0], grad_y.shape[0]
    full = pad_channel_major(grad_y, cache.padding)  # the cropped border restored: (C_out, N, FH, FW)
    cols = backend.im2col(full, weight.shape[2:], cache.stride)  # (C_out kh kw, N H W)
    grad_weight = xp.reshape(backend.matmul(cache.x_rows, cols.T), weight.shape) if param_grads else None
    grad_bias = xp.sum(grad_y, axis=(0, 2, 3)) if param_grads and cache.has_bias else None
    if not input_grad:
        return None, grad_weight, grad_bias
    grad = backend.matmul(xp.reshape(weight, (in_channels, -1)), cols)  # (C_in, N H W)
    # the input's (H, W): FH = (H - 1) sh + kh + output_padding with output_padding < sh
    input_shape = [(f - k) // s + 1 for f, k, s in zip(cache.full_shape[2:], weight.shape[2:], cache.stride)]
    grad_x = xp.permute_dims(xp.reshape(grad, (in_channels, n, *input_shape)), (1, 0, 2, 3))
    return grad_x, grad_weight, grad_bias


def _cudnn_runs_transposed(backend, x, weight, stride, padding, y_shape) -> bool:
    # the forward of a transposed convolution is the input gradient of the convolution from y to x
    return _cudnn_graphs(backend, y_shape, weight.shape, x.shape, x.dtype, padding, stride) is not None


def _conv_transpose2d_cudnn(backend, x, weight, bias, stride, padding, y_shape, full_shape):
    # the forward of a transposed convolution is the input gradient of the convolution from y to x
    xp = backend.xp
    graphs = _cudnn_graphs(backend, y_shape, weight.shape, x.shape, x.dtype, padding, stride)
    x, weight = xp.ascontiguousarray(x), xp.ascontiguousarray(weight)
    y = xp.empty(y_shape, dtype=x.dtype, device=x.device)
    graphs.backward_data(x, weight, y)
    if bias is not None:
        y += bias[:, None, None]
    return y, TransposedCudnnCache(x, graphs, weight, bias is not None, y_shape)


def _conv_transpose2d_backward_cudnn(backend, cache, grad_y, input_grad, param_grads):
    return _backward_cudnn(backend, cache, grad_y, input_grad, param_grads, transposed=True)


# Compiled CPU path (numba, see backends.cpu_kernels): the batch is split into one chunk of images per
# thread; each thread gathers its chunk's windows into its own columns (C kh kw, chunk OH OW),
# multiplies them with the weight through NumPy's BLAS on its own thread (one product per chunk, or
# per image for large images: PER_IMAGE_POSITIONS) and writes its images, so the copies and the
# products of all chunks run side by side. The backward keeps each chunk's weight gradient apart
# (T, O, C kh kw) and sums them afterwards. `geometry` is (kh, kw, sh, sw, ph, pw, OH, OW).


def _geometry(kernel, stride, padding, output_shape):
    return (*kernel, *stride, *padding, *output_shape)


@functools.lru_cache(maxsize=64)
def _window_offsets(xp, geometry, input_width, dilation=(1, 1)):
    """(kh kw, OH OW) int64: where each window entry sits in a flattened padded image plane of an
    input input_width wide, one row per kernel tap (ki, kj) (dilation apart), one column per output
    position (r, q).
    Kept per geometry (read only: shared between calls; building it took 24 us, an eighth of enc1's
    forward)."""
    kh, kw, sh, sw, _, pw, oh, ow = geometry
    (dh, dw) = dilation
    rows = dh * xp.reshape(xp.arange(kh), (kh, 1, 1, 1)) + sh * xp.reshape(xp.arange(oh), (1, 1, oh, 1))
    columns = dw * xp.reshape(xp.arange(kw), (1, kw, 1, 1)) + sw * xp.reshape(xp.arange(ow), (1, 1, 1, ow))
    offsets = xp.reshape(rows * (input_width + 2 * pw) + columns, (kh * kw, oh * ow))
    offsets.flags.writeable = False
    return offsets


# The window copies read (write) each padded image plane through `offsets`: with stride 1 a window
# row is a contiguous run that the compiler vectorises (once it is a slice indexed from 0: an index
# plus an offset might be negative, and that check stops the vectors; 128 x 16 x 28 x 28: 19.8 ->
# 6.5 ms); with larger strides one gather (scatter) per tap over all output positions beats short
# strided runs (enc2's im2col 1.05 -> 0.55 ms).


@kernel
def _windows_to_columns(x, n0, n1, geometry, offsets, padded, cols):
    """im2col of images n0..n1 of x (N, C, H, W) into cols (C kh kw, (n1 - n0) OH OW), each image
    first copied into padded (C, H + 2 ph, W + 2 pw), whose border is zero."""
    _, _, _, sw, ph, pw, oh, ow = geometry
    taps, positions = offsets.shape
    planes = padded.reshape((padded.shape[0], -1))
    padded[:] = 0
    for i in range(n1 - n0):
        padded[:, ph : ph + x.shape[2], pw : pw + x.shape[3]] = x[n0 + i]
        for c in range(x.shape[1]):
            for tap in range(taps):
                row, start, where = c * taps + tap, i * positions, offsets[tap]
                if sw == 1:
                    for r in range(oh):
                        first, column = where[r * ow], start + r * ow
                        source, target = planes[c, first : first + ow], cols[row, column : column + ow]
                        for q in range(ow):
                            target[q] = source[q]
                else:
                    for p in range(positions):
                        cols[row, start + p] = planes[c, where[p]]


@kernel
def _columns_to_windows(cols, n0, n1, geometry, offsets, bias, padded, x):
    """col2im, the adjoint of `_windows_to_columns`: images n0..n1 of x (N, C, H, W) become the
    sums of their entries in cols (C kh kw, (n1 - n0) OH OW), summed in padded (C, H + 2 ph,
    W + 2 pw), cropped, plus bias (C,)."""
    _, _, _, sw, ph, pw, oh, ow = geometry
    taps, positions = offsets.shape
    planes = padded.reshape((padded.shape[0], -1))
    for i in range(n1 - n0):
        padded[:] = 0
        for c in range(x.shape[1]):
            for tap in range(taps):
                row, start, where = c * taps + tap, i * positions, offsets[tap]
                if sw == 1:
                    for r in range(oh):
                        first, column = where[r * ow], start + r * ow
                        source, target = cols[row, column : column + ow], planes[c, first : first + ow]
                        for q in range(ow):
                            target[q] += source[q]
                else:
                    for p in range(positions):
                        planes[c, where[p]] += cols[row, start + p]
            image, plane, shift = x[n0 + i, c], padded[c], bias[c]
            for r in range(x.shape[2]):
                source, target = plane[ph + r, pw : pw + x.shape[3]], image[r]
                for q in range(x.shape[3]):
                    target[q] = source[q] + shift


@kernel
def _channel_major_chunk(y3, n0, n1, out):
    """Images n0..n1 of y3 (N, C, P) as out (C, (n1 - n0) P)."""
    positions = y3.shape[2]
    for i in range(n1 - n0):
        for c in range(y3.shape[1]):
            out[c, i * positions : (i + 1) * positions] = y3[n0 + i, c]


@kernel
def _batch_major_chunk(rows, bias, n0, n1, y3):
    """rows (C, (n1 - n0) P) plus bias (C,) as images n0..n1 of y3 (N, C, P)."""
    positions = y3.shape[2]
    for i in range(n1 - n0):
        for c in range(y3.shape[1]):
            for p in range(positions):
                y3[n0 + i, c, p] = rows[c, i * positions + p] + bias[c]


@kernel
def _chunk_matrix(arrays, t, rows, width):
    """Thread t's (rows, width) matrix in arrays (T, room), or (0, width) where arrays has no room."""
    if arrays.shape[1] == 0:
        rows = 0
    return arrays[t, : rows * width].reshape((rows, width))


@kernel
def _conv2d_chunks(gemm, x, weight2d, bias, geometry, offsets, bounds, planes, buffer, products, y3):
    """y3 (N, O, OH OW) = conv of x (N, C, H, W) with weight2d (O, C kh kw) plus bias (O,), one
    chunk of images per thread, each with its own padded image (planes (T, C, H + 2 ph, W + 2 pw))
    and, for small images, product (products (T, O chunk OH OW)); buffer (T, C kh kw chunk OH OW)
    keeps each chunk's columns for the backward."""
    rows, out_channels, positions = weight2d.shape[1], weight2d.shape[0], geometry[6] * geometry[7]
    for t in parallel_range(len(bounds) - 1):
        n0, n1 = bounds[t], bounds[t + 1]
        width = (n1 - n0) * positions
        cols = _chunk_matrix(buffer, t, rows, width)
        _windows_to_columns(x, n0, n1, geometry, offsets, planes[t], cols)
        if positions >= PER_IMAGE_POSITIONS:
            for i in range(n1 - n0):
                image = y3[n0 + i]
                matmul_into(gemm, weight2d, cols[:, i * positions : (i + 1) * positions], image, False)
                for o in range(out_channels):
                    image[o] += bias[o]
        else:
            product = _chunk_matrix(products, t, out_channels, width)
            matmul_into(gemm, weight2d, cols, product, False)
            _batch_major_chunk(product, bias, n0, n1, y3)


@kernel
def _conv2d_backward_chunks(
    gemm, grad_y3, weight2d, bias, geometry, offsets, bounds, buffer, planes, gathered, grad_cols, grad_x, parts
):
    """From dL/dy3 (N, O, OH OW) and the forward's columns (buffer): where the arrays have room,
    each chunk's dL/dW (parts (T, O, C kh kw)) and dL/dx plus bias (C,) (grad_x (N, C, H, W)); each
    thread keeps its dL/dX_cols in grad_cols and, for small images, gathers its dL/dy as (O, chunk
    OH OW) in `gathered`."""
    rows, out_channels, positions = weight2d.shape[1], weight2d.shape[0], geometry[6] * geometry[7]
    for t in parallel_range(len(bounds) - 1):
        n0, n1 = bounds[t], bounds[t + 1]
        width = (n1 - n0) * positions
        cols = _chunk_matrix(buffer, t, rows, width)
        columns = _chunk_matrix(grad_cols, t, rows, width)
        if positions >= PER_IMAGE_POSITIONS:
            for i in range(n1 - n0):
                image = slice(i * positions, (i + 1) * positions)
                if parts.shape[0] > 0:
                    matmul_into(gemm, grad_y3[n0 + i], cols[:, image].T, parts[t], i > 0)
                if grad_x.shape[0] > 0:
                    matmul_into(gemm, weight2d.T, grad_y3[n0 + i], columns[:, image], False)
        else:
            grad = _chunk_matrix(gathered, t, out_channels, width)
            _channel_major_chunk(grad_y3, n0, n1, grad)
            if parts.shape[0] > 0:
                matmul_into(gemm, grad, cols.T, parts[t], False)  # dL/dW = dY X_cols^T
            if grad_x.shape[0] > 0:  # dL/dX_cols = W^T dY, then col2im
                matmul_into(gemm, weight2d.T, grad, columns, False)
        if grad_x.shape[0] > 0:
            _columns_to_windows(columns, n0, n1, geometry, offsets, bias, planes[t], grad_x)


def _chunks(n, positions):
    """(bounds of one chunk of images per thread, the largest chunk's number of output positions)."""
    bounds = chunk_bounds(n, kernel_threads())
    return bounds, int(bounds[1] - bounds[0]) * positions


def _forward_chunks(backend, x, weight2d, bias, geometry, offsets):
    """(y (N, O, OH, OW), saved) of `_conv2d_chunks`; saved = (buffer, bounds, geometry, offsets,
    chunk_size) is what `_backward_chunks` needs."""
    xp, dtype = backend.xp, x.dtype
    x = xp.ascontiguousarray(x)  # one compiled signature: a strided input is copied
    n, (out_channels, rows), output_shape = x.shape[0], weight2d.shape, geometry[6:]
    positions = output_shape[0] * output_shape[1]
    bounds, chunk_size = _chunks(n, positions)
    chunks, per_image = len(bounds) - 1, positions >= PER_IMAGE_POSITIONS  # per image: no room for products
    buffer = xp.empty((chunks, rows * chunk_size), dtype=dtype)
    products = xp.empty((chunks, 0 if per_image else out_channels * chunk_size), dtype=dtype)
    planes = _padded_planes(xp, chunks, x.shape, geometry[4:6], dtype)
    y = xp.empty((n, out_channels, *output_shape), dtype=dtype)
    y3 = xp.reshape(y, (n, out_channels, positions))
    forward = backend.compiled(_conv2d_chunks)
    forward(blas_gemm(dtype), x, weight2d, bias, geometry, offsets, bounds, planes, buffer, products, y3)
    return y, (buffer, bounds, geometry, offsets, chunk_size)


def _backward_chunks(backend, saved, weight2d, grad_y3, input_shape, input_grad, param_grads, bias):
    """(dL/dx (input_shape) plus bias (C,), dL/dW (O, C kh kw)) of `_conv2d_backward_chunks` from
    dL/dy3 (N, O, OH OW) and the forward's `saved`; None for those not asked for."""
    xp, dtype = backend.xp, grad_y3.dtype
    buffer, bounds, geometry, offsets, chunk_size = saved
    chunks, (out_channels, rows) = len(bounds) - 1, weight2d.shape
    grad_y3 = xp.ascontiguousarray(grad_y3)  # the products read it as matrices; one compiled signature
    per_image = geometry[6] * geometry[7] >= PER_IMAGE_POSITIONS  # the products read dL/dy in place
    gathered = xp.empty((chunks, 0 if per_image else out_channels * chunk_size), dtype=dtype)
    grad_cols = xp.empty((chunks, rows * chunk_size if input_grad else 0), dtype=dtype)
    grad_x = xp.empty(input_shape if input_grad else (0,) * 4, dtype=dtype)
    parts = xp.empty((chunks if param_grads else 0, out_channels, rows), dtype=dtype)
    planes = _padded_planes(xp, chunks, input_shape, geometry[4:6], dtype)
    backward = backend.compiled(_conv2d_backward_chunks)
    arrays = (buffer, planes, gathered, grad_cols, grad_x, parts)
    backward(blas_gemm(dtype), grad_y3, weight2d, bias, geometry, offsets, bounds, *arrays)
    return (grad_x if input_grad else None), (xp.sum(parts, axis=0) if param_grads else None)


def _padded_planes(xp, chunks, shape, padding, dtype):
    """One padded image (C, H + 2 ph, W + 2 pw) per chunk, for the kernels to work in."""
    return xp.empty((chunks, shape[1], shape[2] + 2 * padding[0], shape[3] + 2 * padding[1]), dtype=dtype)


def _conv2d_compiled(backend, x, weight, bias, stride, padding, output_shape, dilation, groups):
    xp = backend.xp
    weight2d = xp.reshape(weight, (weight.shape[0], -1))
    geometry = _geometry(weight.shape[2:], stride, padding, output_shape)
    offsets = _window_offsets(xp, geometry, x.shape[3], tuple(dilation))
    bias_or_zero = bias if bias is not None else xp.zeros(weight.shape[0], dtype=x.dtype)
    y, chunks = _forward_chunks(backend, x, weight2d, bias_or_zero, geometry, offsets)
    return y, CompiledConvCache(chunks, weight, bias is not None, x.shape, y.shape)


def _conv2d_backward_compiled(backend, cache, grad_y, input_grad, param_grads):
    xp, weight = backend.xp, cache.weight
    weight2d = xp.reshape(weight, (weight.shape[0], -1))
    grad_y3 = xp.reshape(grad_y, (*grad_y.shape[:2], -1))
    zero = xp.zeros(weight.shape[1], dtype=grad_y.dtype)
    grad_x, grad_weight = _backward_chunks(
        backend, cache.chunks, weight2d, grad_y3, cache.input_shape, input_grad, param_grads, zero
    )
    if not param_grads:
        return grad_x, None, None
    grad_bias = xp.sum(xp.sum(grad_y3, axis=0), axis=-1) if cache.has_bias else None
    return grad_x, xp.reshape(grad_weight, weight.shape), grad_bias


# The transposed convolution on the compiled path runs the convolution's kernels with the roles
# swapped: its forward is the input gradient of the convolution from y to x (dL/dy3 := x, plus
# the bias); its backward is that convolution's forward of dL/dy (dL/dx = W im2col(dL/dy), the
# columns kept) and then its weight gradient with x in dL/dy's place (dL/dW = X im2col(dL/dy)^T).


def _conv_transpose2d_compiled(backend, x, weight, bias, stride, padding, y_shape, full_shape):
    xp = backend.xp
    n, in_channels, height, width = x.shape
    x3 = xp.reshape(x, (n, in_channels, height * width))
    geometry = _geometry(weight.shape[2:], stride, padding, (height, width))
    offsets = _window_offsets(xp, geometry, y_shape[3])
    bounds, chunk_size = _chunks(n, height * width)
    no_columns = xp.empty((len(bounds) - 1, 0), dtype=x.dtype)  # no weight gradient in a forward
    chunks = (no_columns, bounds, geometry, offsets, chunk_size)
    bias_or_zero = bias if bias is not None else xp.zeros(weight.shape[1], dtype=x.dtype)
    weight2d = xp.reshape(weight, (in_channels, -1))
    y, _ = _backward_chunks(backend, chunks, weight2d, x3, y_shape, True, False, bias_or_zero)
    return y, TransposedCompiledCache(x3, geometry, offsets, weight, bias is not None, y_shape)


def _conv_transpose2d_backward_compiled(backend, cache, grad_y, input_grad, param_grads):
    xp, weight = backend.xp, cache.weight
    weight2d = xp.reshape(weight, (weight.shape[0], -1))
    zero = xp.zeros(weight.shape[0], dtype=grad_y.dtype)
    # the forward keeps im2col(dL/dy) for dL/dW, so it runs (and gives dL/dx) also when only dL/dW is asked for
    grad_x, chunks = _forward_chunks(backend, grad_y, weight2d, zero, cache.geometry, cache.offsets)
    grad_weight = grad_bias = None
    if param_grads:  # no input gradient there: no bias to add (an empty one)
        _, grad_weight = _backward_chunks(backend, chunks, weight2d, cache.x3, grad_y.shape, False, True, zero[:0])
        grad_weight = xp.reshape(grad_weight, weight.shape)
        grad_bias = xp.sum(grad_y, axis=(0, 2, 3)) if cache.has_bias else None
    return (grad_x if input_grad else None), grad_weight, grad_bias


CONV2D = Family(
    "conv2d",
    select_conv2d,
    {
        "cudnn": Implementation(_conv2d_cudnn, _backward_cudnn, CudnnConvCache, _cudnn_runs),
        "winograd": Implementation(_conv2d_winograd, _conv2d_backward_winograd, WinogradCache, _winograd_computes),
        "compiled": Implementation(_conv2d_compiled, _conv2d_backward_compiled, CompiledConvCache, _compiled_ungrouped),
        "one_channel": Implementation(_conv2d_one_channel, _conv2d_backward_one_channel, OneChannelCache, _one_channel),
        "channel_major": Implementation(
            _conv2d_channel_major, _conv2d_backward_channel_major, ChannelMajorCache, _plain_convolution
        ),
        "depthwise": Implementation(conv2d_depthwise, conv2d_backward_depthwise, DepthwiseCache, depthwise_serves),
        "phases": Implementation(_conv2d_phases, _conv2d_backward_phases, PhasesCache, _phases_serve),
        "grouped": Implementation(_conv2d_grouped, _conv2d_backward_grouped, GroupedConvCache),
    },
)

CONV_TRANSPOSE2D = Family(
    "conv_transpose2d",
    select_conv_transpose2d,
    {
        "cudnn": Implementation(
            _conv_transpose2d_cudnn, _conv_transpose2d_backward_cudnn, TransposedCudnnCache, _cudnn_runs_transposed
        ),
        "compiled": Implementation(
            _conv_transpose2d_compiled, _conv_transpose2d_backward_compiled, TransposedCompiledCache, compiles
        ),
        "channel_major": Implementation(
            _conv_transpose2d_channel_major, _conv_transpose2d_backward_channel_major, TransposedChannelMajorCache
        ),
    },
)
