"""Convolutions as im2col + one matrix product, and their transposes; cuDNN on CuPy.

Images are (N, C, H, W). The portable path works channel-major, (C, N, H, W), so that the
im2col matrix is (C kh kw, N OH OW) and one GEMM with the (O, C kh kw) weight gives the output;
a convolution of one-channel images works batch-major instead (see `_forward_one_channel`).
Where the backend has cuDNN (CuPy with cupyx.cudnn), each layer's three products (forward,
weight gradient, input gradient) are cuDNN's convolution routines instead, as in Chainer's
convolution_2d; the transposed convolution is the same three routines in another order.
"""

from __future__ import annotations

from backends import backend_of, get_backend

from .. import arguments
from ..checks import check_input
from ..init import INITS, as_generator, initial_weight
from ..module import Module, Parameter
from .geometry import crop, output_size, pad2d, pad_channel_major, to_batch_major


class _Convolution(Module):
    """What Conv2d and ConvTranspose2d share: hyperparameters, weight and bias, config.

    The weight is (C_out, C_in, kh, kw) for a convolution and (C_in, C_out, kh, kw) for a
    transposed one (PyTorch's layouts); its initialisation uses the fan-in of the convolution
    that maps the layer's output back to its input in the transposed case.
    """

    transposed = False

    def __init__(
        self,
        in_channels,
        out_channels,
        kernel_size,
        stride=1,
        padding=0,
        bias=True,
        init="kaiming",
        rng=None,
        dtype=None,
    ):
        super().__init__()
        xp = get_backend().xp
        dtype = xp.float32 if dtype is None else dtype
        self.in_channels = arguments.integer("in_channels", in_channels)
        self.out_channels = arguments.integer("out_channels", out_channels)
        self.kernel_size = arguments.integer_pair("kernel_size", kernel_size)
        self.stride = arguments.integer_pair("stride", stride)
        self.padding = arguments.integer_pair("padding", padding, minimum=0)
        self.init = arguments.choice("init", init, INITS)
        kh, kw = self.kernel_size
        fan_in, fan_out = in_channels * kh * kw, out_channels * kh * kw
        if self.transposed:
            shape, fan_in, fan_out = (in_channels, out_channels, kh, kw), fan_out, fan_in
        else:
            shape = (out_channels, in_channels, kh, kw)
        self.weight = Parameter(initial_weight(shape, fan_in, fan_out, init, as_generator(rng), dtype))
        self.bias = Parameter(xp.zeros(out_channels, dtype=dtype)) if bias else None

    def config(self):
        return {
            "in_channels": self.in_channels,
            "out_channels": self.out_channels,
            "kernel_size": list(self.kernel_size),
            "stride": list(self.stride),
            "padding": list(self.padding),
            "bias": self.bias is not None,
            "init": self.init,
        }

    @classmethod
    def stored_size(cls, config):
        kh, kw = arguments.integer_pair("kernel_size", config["kernel_size"])
        c_in, c_out = (
            arguments.integer("in_channels", config["in_channels"]),
            arguments.integer("out_channels", config["out_channels"]),
        )
        return c_in * c_out * kh * kw + (c_out if config.get("bias", True) else 0)

    def _cudnn_parameter_gradients(self, xp, source, result, grad_output):
        """Add cuDNN's weight gradient of the convolution that maps `source` to `result` (the layer's
        input and output gradient; the other way round for a transposed layer), and the bias's."""
        if self.weight.requires_grad:
            grad_weight = xp.empty_like(self.weight.data)
            self.cudnn.convolution_backward_filter(
                source, result, grad_weight, *self._cudnn_geometry(), **CUDNN_BACKWARD_OPTIONS
            )
            self.weight.accumulate(grad_weight)
        if self.bias is not None and self.bias.requires_grad:
            self.bias.accumulate(xp.sum(grad_output, axis=(0, 2, 3)))

    def _cudnn_geometry(self):
        """The arguments cupyx.cudnn's convolution routines share: padding, stride, dilation, groups."""
        return tuple(self.padding), tuple(self.stride), (1, 1), 1


CUDNN_OPTIONS = {"auto_tune": False, "tensor_core": "never"}  # float32 stays float32 (no TF32)
CUDNN_BACKWARD_OPTIONS = {**CUDNN_OPTIONS, "deterministic": False}


class Conv2d(_Convolution):
    """2-D convolution (cross-correlation, as in PyTorch).

    x: (N, C_in, H, W) -> y: (N, C_out, OH, OW), OH = (H + 2 p - kh) // s + 1.
    weight: (C_out, C_in, kh, kw), bias: (C_out,). Kaiming initialisation by default.
    """

    def forward(self, x):
        backend = backend_of(x)
        xp = backend.xp
        check_input(x, ndim=4, name="Conv2d", sizes={1: self.in_channels}, like=self.weight.data)
        n, _, height, width = x.shape
        oh, ow = self._output_shape(height, width)
        self.cudnn = backend.library("cudnn")
        if self.cudnn is not None:
            self.x = x
            y = xp.empty((n, self.out_channels, oh, ow), dtype=x.dtype, device=x.device)
            bias = None if self.bias is None else self.bias.data
            self.cudnn.convolution_forward(x, self.weight.data, bias, y, *self._cudnn_geometry(), **CUDNN_OPTIONS)
            return y
        if self.in_channels == 1:
            return self._forward_one_channel(backend, x, oh, ow)
        padded = pad_channel_major(x, self.padding)
        self.padded_shape = padded.shape
        self.cols = backend.im2col(padded, self.kernel_size, self.stride)  # (C kh kw, N OH OW)
        y = xp.reshape(self.weight.data, (self.out_channels, -1)) @ self.cols  # (O, N OH OW)
        if self.bias is not None:
            y += self.bias.data[:, None]
        return to_batch_major(xp.reshape(y, (self.out_channels, n, oh, ow)))

    def backward(self, grad_output, input_grad=True):
        # with Y = W X_cols: dL/dW = dY X_cols^T, dL/dX_cols = W^T dY, then col2im sums the windows
        backend = backend_of(grad_output)
        xp = backend.xp
        if self.cudnn is not None:
            return self._backward_cudnn(xp, grad_output, input_grad)
        if self.in_channels == 1:
            return self._backward_one_channel(backend, grad_output, input_grad)
        grad = xp.reshape(xp.permute_dims(grad_output, (1, 0, 2, 3)), (self.out_channels, -1))  # (O, N OH OW)
        weight = xp.reshape(self.weight.data, (self.out_channels, -1))
        if self.weight.requires_grad:
            self.weight.accumulate(xp.reshape(grad @ self.cols.T, self.weight.shape))
        if self.bias is not None and self.bias.requires_grad:
            self.bias.accumulate(xp.sum(grad, axis=1))
        if not input_grad:
            return None
        padded = backend.col2im(weight.T @ grad, self.padded_shape, self.kernel_size, self.stride)
        return xp.permute_dims(crop(padded, self.padding), (1, 0, 2, 3))

    # A first layer on one-channel images has a tiny kh kw inner dimension: its products are cheap
    # and the two transposes of the channel-major path (output, output gradient) would cost the
    # most. Batch-major instead: each image's windows (kh kw, OH OW) times the (O, kh kw) weight
    # is that image's (O, OH OW) output, one batched product, no transposes. The windows come from
    # the same im2col with the batch in the channels' place: (N, 1, H, W) -> (N kh kw, OH OW).

    def _forward_one_channel(self, backend, x, oh, ow):
        xp = backend.xp
        n = x.shape[0]
        padded = pad2d(x, self.padding)  # (N, 1, H + 2 ph, W + 2 pw)
        self.padded_shape = padded.shape
        cols = backend.im2col(padded, self.kernel_size, self.stride)  # (N kh kw, OH OW)
        self.cols = xp.reshape(cols, (n, -1, oh * ow))  # (N, kh kw, OH OW)
        y = xp.reshape(self.weight.data, (self.out_channels, -1)) @ self.cols  # (N, O, OH OW)
        if self.bias is not None:
            y += self.bias.data[:, None]
        return xp.reshape(y, (n, self.out_channels, oh, ow))

    def _backward_one_channel(self, backend, grad_output, input_grad):
        xp = backend.xp
        n = grad_output.shape[0]
        grad = xp.reshape(grad_output, (n, self.out_channels, -1))  # (N, O, OH OW)
        weight = xp.reshape(self.weight.data, (self.out_channels, -1))
        if self.weight.requires_grad:  # sum over images of dY_n X_cols_n^T
            per_image = grad @ xp.permute_dims(self.cols, (0, 2, 1))  # (N, O, kh kw)
            self.weight.accumulate(xp.reshape(xp.sum(per_image, axis=0), self.weight.shape))
        if self.bias is not None and self.bias.requires_grad:
            self.bias.accumulate(xp.sum(xp.sum(grad, axis=0), axis=-1))
        if not input_grad:
            return None
        cols = xp.reshape(weight.T @ grad, (-1, grad.shape[2]))  # (N kh kw, OH OW)
        return crop(backend.col2im(cols, self.padded_shape, self.kernel_size, self.stride), self.padding)

    def _backward_cudnn(self, xp, grad_output, input_grad):
        """The same gradients from cuDNN: the weight's from (x, dY), the input's from (W, dY)."""
        self._cudnn_parameter_gradients(xp, self.x, grad_output, grad_output)
        if not input_grad:
            return None
        grad_input = xp.empty_like(self.x)
        self.cudnn.convolution_backward_data(
            self.weight.data, grad_output, None, grad_input, *self._cudnn_geometry(), **CUDNN_BACKWARD_OPTIONS
        )
        return grad_input

    def _output_shape(self, height, width):
        (kh, kw), (sh, sw), (ph, pw) = self.kernel_size, self.stride, self.padding
        oh, ow = output_size(height, kh, sh, ph), output_size(width, kw, sw, pw)
        if oh < 1 or ow < 1:
            raise ValueError(
                f"Conv2d: input {height}x{width} with padding {self.padding} is smaller than the kernel "
                f"{self.kernel_size} (output would be {oh}x{ow})"
            )
        return oh, ow


class ConvTranspose2d(_Convolution):
    """Transposed convolution (the adjoint of Conv2d), for upsampling in decoders.

    x: (N, C_in, H, W) -> y: (N, C_out, OH, OW), OH = (H - 1) s - 2 p + kh + output_padding.
    weight: (C_in, C_out, kh, kw) as in PyTorch, bias: (C_out,).
    """

    transposed = True

    def __init__(
        self,
        in_channels,
        out_channels,
        kernel_size,
        stride=1,
        padding=0,
        output_padding=0,
        bias=True,
        init="kaiming",
        rng=None,
        dtype=None,
    ):
        super().__init__(in_channels, out_channels, kernel_size, stride, padding, bias, init, rng, dtype)
        self.output_padding = arguments.integer_pair("output_padding", output_padding, minimum=0)
        if any(o >= s for o, s in zip(self.output_padding, self.stride)):
            raise ValueError(f"output_padding {self.output_padding} must be smaller than stride {self.stride}")

    def forward(self, x):
        backend = backend_of(x)
        xp = backend.xp
        check_input(x, ndim=4, name="ConvTranspose2d", sizes={1: self.in_channels}, like=self.weight.data)
        n, _, height, width = x.shape
        self.input_shape = (height, width)
        self.cudnn = backend.library("cudnn")
        if self.cudnn is not None:  # the forward of a transposed convolution is a convolution's input gradient
            self.x = x
            _, _, full_height, full_width = self._full_shape(n)
            (ph, pw) = self.padding
            y = xp.empty(
                (n, self.out_channels, full_height - 2 * ph, full_width - 2 * pw), dtype=x.dtype, device=x.device
            )
            bias = None if self.bias is None else self.bias.data
            self.cudnn.convolution_backward_data(
                self.weight.data, x, bias, y, *self._cudnn_geometry(), **CUDNN_BACKWARD_OPTIONS
            )
            return y
        self.x = xp.reshape(xp.permute_dims(x, (1, 0, 2, 3)), (self.in_channels, -1))  # (C_in, N H W)
        cols = xp.reshape(self.weight.data, (self.in_channels, -1)).T @ self.x  # (C_out kh kw, N H W)
        y = crop(backend.col2im(cols, self._full_shape(n), self.kernel_size, self.stride), self.padding)
        if self.bias is not None:
            y += self.bias.data[:, None, None, None]
        return to_batch_major(y)

    def backward(self, grad_output, input_grad=True):
        # forward is X -> col2im(W^T X); its adjoint takes dY -> im2col(dY) = dCols, then
        # dL/dW = X dCols^T and dL/dX = W dCols
        backend = backend_of(grad_output)
        xp = backend.xp
        if self.cudnn is not None:
            return self._backward_cudnn(xp, grad_output, input_grad)
        n = grad_output.shape[0]
        # restore the cropped border: (C_out, N, FH, FW), the shape forward's col2im produced
        full = pad_channel_major(grad_output, self.padding)
        cols = backend.im2col(full, self.kernel_size, self.stride)  # (C_out kh kw, N H W)
        if self.weight.requires_grad:
            self.weight.accumulate(xp.reshape(self.x @ cols.T, self.weight.shape))
        if self.bias is not None and self.bias.requires_grad:
            self.bias.accumulate(xp.sum(grad_output, axis=(0, 2, 3)))
        if not input_grad:
            return None
        grad = xp.reshape(self.weight.data, (self.in_channels, -1)) @ cols  # (C_in, N H W)
        return xp.permute_dims(xp.reshape(grad, (self.in_channels, n, *self.input_shape)), (1, 0, 2, 3))

    def _backward_cudnn(self, xp, grad_output, input_grad):
        """With cuDNN: the weight's gradient as a convolution's weight gradient with the roles of
        input and output swapped, the input's gradient as a convolution of dY with W."""
        self._cudnn_parameter_gradients(xp, grad_output, self.x, grad_output)
        if not input_grad:
            return None
        grad_input = xp.empty_like(self.x)
        self.cudnn.convolution_forward(
            grad_output, self.weight.data, None, grad_input, *self._cudnn_geometry(), **CUDNN_OPTIONS
        )
        return grad_input

    def _full_shape(self, n):
        """(C_out, N, FH, FW): the output before cropping `padding`, with room for output_padding."""
        (kh, kw), (sh, sw), (oph, opw) = self.kernel_size, self.stride, self.output_padding
        height, width = self.input_shape
        # output_padding adds rows/columns that no input reaches: extend by whole strides' worth
        return (self.out_channels, n, (height - 1) * sh + kh + oph, (width - 1) * sw + kw + opw)

    def config(self):
        return {**super().config(), "output_padding": list(self.output_padding)}


class Conv1d(Conv2d):
    """1-D convolution, the 2-D one on a height-1 image.

    x: (N, C_in, L) -> y: (N, C_out, OL), OL = (L + 2 p - k) // s + 1.
    weight: (C_out, C_in, k) as in PyTorch, bias: (C_out,).
    """

    def __init__(
        self,
        in_channels,
        out_channels,
        kernel_size,
        stride=1,
        padding=0,
        bias=True,
        init="kaiming",
        rng=None,
        dtype=None,
    ):
        super().__init__(in_channels, out_channels, (1, kernel_size), (1, stride), (0, padding), bias, init, rng, dtype)
        self.weight.data = backend_of(self.weight.data).xp.reshape(
            self.weight.data, (out_channels, in_channels, kernel_size)
        )

    def forward(self, x):
        xp = backend_of(x).xp
        check_input(x, ndim=3, name="Conv1d", sizes={1: self.in_channels}, like=self.weight.data)
        y = super().forward(xp.expand_dims(x, axis=2))
        return y[:, :, 0, :]

    def backward(self, grad_output, input_grad=True):
        grad = super().backward(backend_of(grad_output).xp.expand_dims(grad_output, axis=2), input_grad)
        return None if grad is None else grad[:, :, 0, :]

    @classmethod
    def stored_size(cls, config):
        return super().stored_size({**config, "kernel_size": [1, config["kernel_size"]]})

    def config(self):
        return {
            "in_channels": self.in_channels,
            "out_channels": self.out_channels,
            "kernel_size": self.kernel_size[1],
            "stride": self.stride[1],
            "padding": self.padding[1],
            "bias": self.bias is not None,
            "init": self.init,
        }
