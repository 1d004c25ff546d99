"""Max and average pooling of images: thin modules over `diynn.functional.pooling`."""

from __future__ import annotations

from .. import functional as F
from ..backends import backend_of
from ..checks import check_input
from ..functional.pooling import pool_window
from ..module import Module


class _Pool2d(Module):
    """What max and average pooling share: kernel, stride (default: the kernel) and padding (at
    most half the kernel), checked when the layer is built."""

    def __init__(self, kernel_size, stride=None, padding=0):
        super().__init__()
        self.kernel_size, self.stride, self.padding = pool_window(kernel_size, stride, padding)

    def config(self):
        return {"kernel_size": list(self.kernel_size), "stride": list(self.stride), "padding": list(self.padding)}


class MaxPool2d(_Pool2d):
    """y = max over each kh x kw window (the padding is -inf).

    The gradient goes to the first maximum of each window among the input's pixels (never to the
    padding, also when a whole window is -inf: as in PyTorch).

    Shapes: x (N, C, H, W) -> y (N, C, OH, OW), OH = (H + 2 ph - kh) // sh + 1 (OW likewise).

    Args:
        kernel_size: kh = kw, or a (kh, kw) pair.
        stride: an int or a pair; None (default): the kernel size.
        padding: an int or a pair, each at most half the kernel.

    Raises:
        ValueError: padding over half the kernel.
    """

    def forward(self, x):
        check_input(x, ndim=4, name=type(self).__name__)
        y, cache = F.max_pool2d(x, self.kernel_size, self.stride, self.padding)
        self.save_for_backward(cache)
        return y

    def backward(self, grad_output, input_grad=True):
        return F.max_pool2d_backward(self.saved_for_backward(), grad_output)


class AvgPool2d(_Pool2d):
    """y = mean over each kh x kw window (zero padding counts in the mean, as in PyTorch).

    Shapes: x (N, C, H, W) -> y (N, C, OH, OW), OH = (H + 2 ph - kh) // sh + 1 (OW likewise).

    Args:
        kernel_size: kh = kw, or a (kh, kw) pair.
        stride: an int or a pair; None (default): the kernel size.
        padding: an int or a pair, each at most half the kernel.

    Raises:
        ValueError: padding over half the kernel.
    """

    def forward(self, x):
        check_input(x, ndim=4, name="AvgPool2d")
        y, cache = F.avg_pool2d(x, self.kernel_size, self.stride, self.padding)
        self.save_for_backward(cache)
        return y

    def backward(self, grad_output, input_grad=True):
        return F.avg_pool2d_backward(self.saved_for_backward(), grad_output)


class MaxPool1d(MaxPool2d):
    """1-D max pooling, the 2-D one on a height-1 image.

    Shapes: x (N, C, L) -> y (N, C, OL), OL = (L + 2 p - k) // s + 1.

    Args:
        kernel_size: k, an int.
        stride: s, an int; None (default): the kernel size.
        padding: p, an int, at most half the kernel.
    """

    def __init__(self, kernel_size, stride=None, padding=0):
        super().__init__((1, kernel_size), None if stride is None else (1, stride), (0, padding))

    def forward(self, x):
        check_input(x, ndim=3, name="MaxPool1d")
        return super().forward(backend_of(x).xp.expand_dims(x, axis=2))[:, :, 0, :]

    def backward(self, grad_output, input_grad=True):
        return super().backward(backend_of(grad_output).xp.expand_dims(grad_output, axis=2))[:, :, 0, :]

    def config(self):
        return {"kernel_size": self.kernel_size[1], "stride": self.stride[1], "padding": self.padding[1]}
