"""Max and average pooling of (N, C, H, W) images.

Each window offset (i, j) of a kh x kw kernel is one strided slice of the input,
x[..., i::sh, j::sw], of the output's shape; pooling combines the kh kw slices elementwise and
the backward adds each slice's share of the gradient back with a strided slice-add.
"""

from __future__ import annotations

import math

from backends import backend_of

from .. import arguments
from ..checks import check_input
from ..module import Module
from .geometry import crop, output_size, pad2d


class _Pool2d(Module):
    """What max and average pooling share: kernel, stride (default: the kernel) and padding,
    the window slices of a padded input, and summing per-offset gradients back onto the input."""

    pad_value = 0.0

    def __init__(self, kernel_size, stride=None, padding=0):
        super().__init__()
        self.kernel_size = arguments.integer_pair("kernel_size", kernel_size)
        self.stride = arguments.integer_pair("stride", stride) if stride is not None else self.kernel_size
        self.padding = arguments.integer_pair("padding", padding, minimum=0)
        if any(2 * p > k for p, k in zip(self.padding, self.kernel_size)):
            raise ValueError(f"padding {self.padding} must be at most half the kernel {self.kernel_size}")

    def window_slices(self, x):
        """Pad x and return it with the kh kw (rows, columns) slices, one per kernel offset."""
        check_input(x, ndim=4, name=type(self).__name__)
        height, width = x.shape[2:]
        (kh, kw), (sh, sw), (ph, pw) = self.kernel_size, self.stride, self.padding
        oh, ow = output_size(height, kh, sh, ph), output_size(width, kw, sw, pw)
        if oh < 1 or ow < 1:
            raise ValueError(
                f"{type(self).__name__}: input {height}x{width} is smaller than the kernel {self.kernel_size}"
            )
        padded = pad2d(x, self.padding, self.pad_value)
        self.padded_shape, self.dtype = padded.shape, x.dtype
        return padded, [
            (slice(i, i + sh * (oh - 1) + 1, sh), slice(j, j + sw * (ow - 1) + 1, sw))
            for i in range(kh)
            for j in range(kw)
        ]

    def gather(self, parts):
        """Sum window-offset gradients (one array per offset, the output's shape) onto the input;
        pixels in no window (stride larger than the kernel, or a remainder) get exactly zero."""
        xp = backend_of(parts[0]).xp
        overlapping = any(s < k for s, k in zip(self.stride, self.kernel_size))
        tiled = all(  # the windows cover every pixel exactly once: no zeros needed
            s == k and size % k == 0 for size, k, s in zip(self.padded_shape[2:], self.kernel_size, self.stride)
        )
        make = xp.empty if tiled else xp.zeros
        grad = make(self.padded_shape, dtype=self.dtype, device=parts[0].device)
        for (rows, columns), part in zip(self.slices, parts):
            if overlapping:
                grad[:, :, rows, columns] += part
            else:  # each pixel is in one window at most: plain assignment, no read
                grad[:, :, rows, columns] = part
        return crop(grad, self.padding)

    def config(self):
        return {"kernel_size": list(self.kernel_size), "stride": list(self.stride), "padding": list(self.padding)}


class MaxPool2d(_Pool2d):
    """y = max over each kh x kw window (stride defaults to the kernel size; padding is -inf).

    x: (N, C, H, W) -> y: (N, C, OH, OW). The gradient goes to the first maximum of each window
    among the input's pixels (never to the padding, also when a whole window is -inf: as in PyTorch).
    """

    pad_value = -math.inf

    def forward(self, x):
        xp = backend_of(x).xp
        self.padded, self.slices = self.window_slices(x)
        windows = [self.padded[:, :, rows, columns] for rows, columns in self.slices]
        self.y = windows[0]
        for window in windows[1:]:
            self.y = xp.maximum(self.y, window)
        return self.y

    def backward(self, grad_output, input_grad=True):
        # dy/dx = 1 at the window's first maximum, 0 elsewhere
        xp = backend_of(grad_output).xp
        taken = xp.zeros(self.y.shape, dtype=xp.bool, device=self.y.device)
        inside = None
        if any(self.padding):  # where the padded image is the input, not its -inf border
            height, width = self.padded_shape[2:]
            inside = xp.zeros((1, 1, height, width), dtype=xp.bool, device=self.y.device)
            (ph, pw) = self.padding
            inside[:, :, ph : height - ph, pw : width - pw] = True
        parts = []
        for rows, columns in self.slices:
            first = (self.padded[:, :, rows, columns] == self.y) & ~taken
            if inside is not None:
                first &= inside[:, :, rows, columns]
            taken |= first
            parts.append(grad_output * xp.astype(first, grad_output.dtype))
        return self.gather(parts)


class AvgPool2d(_Pool2d):
    """y = mean over each kh x kw window (zero padding counts in the mean, as in PyTorch).

    x: (N, C, H, W) -> y: (N, C, OH, OW).
    """

    def forward(self, x):
        padded, self.slices = self.window_slices(x)
        total = padded[:, :, self.slices[0][0], self.slices[0][1]]
        for rows, columns in self.slices[1:]:
            total = total + padded[:, :, rows, columns]
        return total / len(self.slices)

    def backward(self, grad_output, input_grad=True):
        # dy/dx = 1 / (kh kw) for every pixel of the window
        share = grad_output / len(self.slices)
        return self.gather([share] * len(self.slices))


class MaxPool1d(MaxPool2d):
    """x: (N, C, L) -> y: (N, C, OL): the 2-D max-pool on a height-1 image."""

    def __init__(self, kernel_size, stride=None, padding=0):
        super().__init__((1, kernel_size), None if stride is None else (1, stride), (0, padding))

    def forward(self, x):
        check_input(x, ndim=3, name="MaxPool1d")
        return super().forward(backend_of(x).xp.expand_dims(x, axis=2))[:, :, 0, :]

    def backward(self, grad_output, input_grad=True):
        return super().backward(backend_of(grad_output).xp.expand_dims(grad_output, axis=2))[:, :, 0, :]

    def config(self):
        return {"kernel_size": self.kernel_size[1], "stride": self.stride[1], "padding": self.padding[1]}
