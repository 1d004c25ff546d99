"""Convolutions and transposed convolutions: thin modules over `diynn.functional.convolution`."""

from __future__ import annotations

from .. import arguments
from .. import functional as F
from ..backends import backend_of, get_backend
from ..checks import check_input
from ..init import INITS, as_generator, initial_weight
from ..module import Module, Parameter


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
        groups=1,
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
        self.groups = arguments.integer("groups", groups)
        if in_channels % groups or out_channels % groups:
            raise ValueError(
                f"groups={groups} must divide in_channels ({in_channels}) and out_channels ({out_channels})"
            )
        kh, kw = self.kernel_size
        fan_in, fan_out = in_channels // groups * kh * kw, out_channels // groups * kh * kw
        if self.transposed:
            shape, fan_in, fan_out = (in_channels, out_channels, kh, kw), fan_out, fan_in
        else:
            shape = (out_channels, in_channels // groups, kh, kw)
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
        groups = arguments.integer("groups", config.get("groups", 1))  # each output sees C_in / groups channels
        return c_in // groups * c_out * kh * kw + (c_out if config.get("bias", True) else 0)

    def backward(self, grad_output, input_grad=True):
        grad_x, grad_weight, grad_bias = self.op_backward(
            self.saved_for_backward(), grad_output, input_grad, self.wants_parameter_grads()
        )
        if grad_weight is not None:  # Conv1d keeps a 3-D weight
            grad_weight = backend_of(grad_weight).xp.reshape(grad_weight, self.weight.shape)
        self.accumulate_grads(weight=grad_weight, bias=grad_bias)
        return grad_x

    @property
    def kernel(self):
        """The weight as the 4-D (channels, channels, kh, kw) array the ops take (a view)."""
        weight = self.weight.data
        return backend_of(weight).xp.reshape(weight, (*weight.shape[:2], *self.kernel_size))

    @property
    def bias_data(self):
        return None if self.bias is None else self.bias.data


class Conv2d(_Convolution):
    """2-D convolution (cross-correlation, as in PyTorch).

    Shapes: x (N, C_in, H, W) of the parameters' dtype -> y (N, C_out, OH, OW),
    OH = (H + 2 p - d (kh - 1) - 1) // s + 1 (OW likewise). weight: (C_out, C_in / groups, kh, kw),
    bias: (C_out,).

    Args:
        in_channels: C_in.
        out_channels: C_out.
        kernel_size: kh = kw, or a (kh, kw) pair.
        stride: s, an int or a pair.
        padding: p, an int or a pair: zeros around each image.
        dilation: d, an int or a pair: spaces the kernel's taps.
        groups: splits the channels into that many independent convolutions (groups = in_channels =
            out_channels: depthwise); it divides both channel counts.
        bias: whether to add a learned bias (initialised to zeros).
        init: the weight's initialisation, "kaiming" (default, for ReLU) or "xavier" (tanh, sigmoid).
        rng: seed or Generator for the initial weight.
        dtype: the parameters' dtype (default float32).

    Raises:
        ValueError: groups that do not divide the channel counts.
    """

    op_backward = staticmethod(F.conv2d_backward)

    def __init__(
        self,
        in_channels,
        out_channels,
        kernel_size,
        stride=1,
        padding=0,
        dilation=1,
        groups=1,
        bias=True,
        init="kaiming",
        rng=None,
        dtype=None,
    ):
        super().__init__(in_channels, out_channels, kernel_size, stride, padding, bias, init, rng, dtype, groups)
        self.dilation = arguments.integer_pair("dilation", dilation)

    def forward(self, x):
        check_input(x, ndim=4, name="Conv2d", sizes={1: self.in_channels}, like=self.weight.data)
        y, cache = F.conv2d(x, self.kernel, self.bias_data, self.stride, self.padding, self.dilation, self.groups)
        self.save_for_backward(cache)
        return y

    def config(self):
        return {**super().config(), "dilation": list(self.dilation), "groups": self.groups}


class ConvTranspose2d(_Convolution):
    """Transposed convolution (the adjoint of Conv2d), for upsampling in decoders.

    Shapes: x (N, C_in, H, W) of the parameters' dtype -> y (N, C_out, OH, OW),
    OH = (H - 1) s - 2 p + kh + output_padding (OW likewise). weight: (C_in, C_out, kh, kw) as in
    PyTorch, bias: (C_out,).

    Args:
        in_channels: C_in.
        out_channels: C_out.
        kernel_size: kh = kw, or a (kh, kw) pair.
        stride: s, an int or a pair.
        padding: p, an int or a pair, cropped from each side of the output.
        output_padding: an int or a pair, smaller than the stride: rows and columns added at the
            bottom and right of the output.
        bias: whether to add a learned bias (initialised to zeros).
        init: the weight's initialisation, "kaiming" (default) or "xavier".
        rng: seed or Generator for the initial weight.
        dtype: the parameters' dtype (default float32).

    Raises:
        ValueError: an output_padding not smaller than the stride.
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

    op_backward = staticmethod(F.conv_transpose2d_backward)

    def forward(self, x):
        check_input(x, ndim=4, name="ConvTranspose2d", sizes={1: self.in_channels}, like=self.weight.data)
        y, cache = F.conv_transpose2d(x, self.kernel, self.bias_data, self.stride, self.padding, self.output_padding)
        self.save_for_backward(cache)
        return y

    def config(self):
        return {**super().config(), "output_padding": list(self.output_padding)}


class Conv1d(Conv2d):
    """1-D convolution, the 2-D one on a height-1 image.

    Shapes: x (N, C_in, L) of the parameters' dtype -> y (N, C_out, OL), OL = (L + 2 p - k) // s + 1.
    weight: (C_out, C_in, k) as in PyTorch, bias: (C_out,).

    Args:
        in_channels: C_in.
        out_channels: C_out.
        kernel_size: k, an int.
        stride: s, an int.
        padding: p, an int: zeros at both ends of each sequence.
        bias: whether to add a learned bias (initialised to zeros).
        init: the weight's initialisation, "kaiming" (default) or "xavier".
        rng: seed or Generator for the initial weight.
        dtype: the parameters' dtype (default float32).
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
        geometry = {"kernel_size": (1, kernel_size), "stride": (1, stride), "padding": (0, padding)}
        super().__init__(in_channels, out_channels, **geometry, bias=bias, init=init, rng=rng, dtype=dtype)
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
