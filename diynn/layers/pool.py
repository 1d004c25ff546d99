"""Max and average pooling over windows of (N, C, H, W) images, through the backend's im2col."""

from __future__ import annotations

import math

from backends import get_backend

from ..checks import check_input
from ..module import Module
from .conv import crop, output_size, pad_channel_major, pair


class _Pool2d(Module):
    """Windows of each channel as the columns of a (kh kw, N C OH OW) matrix."""

    pad_value = 0.0

    def __init__(self, kernel_size, stride=None, padding=0):
        super().__init__()
        self.kernel_size = pair(kernel_size)
        self.stride = pair(stride) if stride is not None else self.kernel_size
        self.padding = pair(padding)
        if any(2 * p > k for p, k in zip(self.padding, self.kernel_size)):
            raise ValueError(f"padding {self.padding} must be at most half the kernel {self.kernel_size}")

    def windows(self, x):
        xp = get_backend().xp
        check_input(x, ndim=4, name=type(self).__name__)
        n, channels, height, width = x.shape
        (kh, kw), (sh, sw), (ph, pw) = self.kernel_size, self.stride, self.padding
        oh, ow = output_size(height, kh, sh, ph), output_size(width, kw, sw, pw)
        if oh < 1 or ow < 1:
            raise ValueError(
                f"{type(self).__name__}: input {height}x{width} is smaller than the kernel {self.kernel_size}"
            )
        self.output_shape = (n, channels, oh, ow)
        # every (image, channel) pair becomes one image of a single channel: (N C, 1, H, W)
        padded = pad_channel_major(xp.reshape(x, (n * channels, 1, height, width)), self.padding, self.pad_value)
        self.padded_shape = padded.shape
        return get_backend().im2col(padded, self.kernel_size, self.stride)  # (kh kw, N C OH OW)

    def scatter(self, grad_cols):
        """Sum window gradients (kh kw, N C OH OW) back onto the input: (N, C, H, W)."""
        xp = get_backend().xp
        padded = get_backend().col2im(grad_cols, self.padded_shape, self.kernel_size, self.stride)
        n, channels = self.output_shape[:2]
        image = crop(padded, self.padding)
        return xp.reshape(image, (n, channels, image.shape[-2], image.shape[-1]))

    def config(self):
        return {"kernel_size": list(self.kernel_size), "stride": list(self.stride), "padding": list(self.padding)}


class MaxPool2d(_Pool2d):
    """y = max over each kh x kw window (stride defaults to the kernel size; padding is -inf).

    x: (N, C, H, W) -> y: (N, C, OH, OW). The gradient goes to the first maximum of each window.
    """

    pad_value = -math.inf

    def forward(self, x):
        xp = get_backend().xp
        cols = self.windows(x)
        self.argmax = xp.argmax(cols, axis=0)
        return xp.reshape(xp.max(cols, axis=0), self.output_shape)

    def backward(self, grad_output, input_grad=True):
        # dy/dx = 1 at the window's (first) argmax, 0 elsewhere
        xp = get_backend().xp
        positions = xp.arange(self.kernel_size[0] * self.kernel_size[1], device=self.argmax.device)
        mask = positions[:, None] == self.argmax[None, :]
        grad = xp.reshape(grad_output, (1, -1))
        return self.scatter(xp.where(mask, grad, xp.zeros_like(grad)))


class AvgPool2d(_Pool2d):
    """y = mean over each kh x kw window (zero padding counts in the mean, as in PyTorch).

    x: (N, C, H, W) -> y: (N, C, OH, OW).
    """

    def forward(self, x):
        xp = get_backend().xp
        return xp.reshape(xp.mean(self.windows(x), axis=0), self.output_shape)

    def backward(self, grad_output, input_grad=True):
        # dy/dx = 1 / (kh kw) for every pixel of the window
        xp = get_backend().xp
        size = self.kernel_size[0] * self.kernel_size[1]
        grad = xp.reshape(grad_output, (1, -1)) / size
        return self.scatter(xp.broadcast_to(grad, (size, grad.shape[1])))
