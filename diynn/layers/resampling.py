"""Upsampling and adaptive average pooling: thin modules over `diynn.functional.resampling`."""

from __future__ import annotations

from .. import arguments
from .. import functional as F
from ..functional.resampling import MODES
from ..module import Module


class Upsample(Module):
    """Upsampling by a scale factor, as torch.nn.Upsample.

    Shapes: x (N, C, H, W) -> y (N, C, floor(H s_h), floor(W s_w)).

    Backward: the adjoint of the interpolation, each input pixel collecting the gradients of the
    outputs it contributed to, with its weights.

    Args:
        scale_factor: a number s = s_h = s_w, or an (s_h, s_w) pair, each >= 1.
        mode: "nearest" (the input pixel floor(i / s)) or "bilinear".
        align_corners: bilinear only, as in PyTorch: map the corner pixels of input and output onto
            each other.

    Raises:
        ValueError: an unknown mode, or align_corners with "nearest".
    """

    def __init__(self, scale_factor=2, mode="nearest", align_corners=False):
        super().__init__()
        scales = scale_factor if isinstance(scale_factor, (tuple, list)) else (scale_factor,)
        for scale in scales:
            arguments.real("scale_factor", scale, low=1)
        self.scale_factor = list(scale_factor) if isinstance(scale_factor, (tuple, list)) else scale_factor
        self.mode = arguments.choice("mode", mode, MODES)
        if self.mode == "nearest" and align_corners:
            raise ValueError("align_corners applies to bilinear upsampling only (mode='bilinear')")
        self.align_corners = bool(align_corners)

    def forward(self, x):
        y, cache = F.upsample(x, self.scale_factor, self.mode, self.align_corners)
        self.save_for_backward(cache)
        return y

    def backward(self, grad_output, input_grad=True):
        cache = self.saved_for_backward()
        return F.upsample_backward(cache, grad_output) if input_grad else None

    def config(self):
        return {"scale_factor": self.scale_factor, "mode": self.mode, "align_corners": self.align_corners}


class AdaptiveAvgPool2d(Module):
    """Adaptive average pooling, as PyTorch's.

    Shapes: x (N, C, H, W) -> y (N, C, OH, OW).

    Each output is the mean of its bin of the input; output_size 1 is global average pooling, the
    head of a ResNet.

    Args:
        output_size: OH = OW, or an (OH, OW) pair, each >= 1.
    """

    def __init__(self, output_size=1):
        super().__init__()
        self.output_size = arguments.integer_pair("output_size", output_size)

    def forward(self, x):
        y, cache = F.adaptive_avg_pool2d(x, self.output_size)
        self.save_for_backward(cache)
        return y

    def backward(self, grad_output, input_grad=True):
        cache = self.saved_for_backward()
        return F.adaptive_avg_pool2d_backward(cache, grad_output) if input_grad else None

    def config(self):
        return {"output_size": list(self.output_size)}
