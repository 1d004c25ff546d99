"""Shape changes between convolutional and dense parts of a network."""

import math

from .. import arguments
from ..backends import backend_of
from ..checks import check_input
from ..module import Module


class Flatten(Module):
    """x (N, d1, d2, ...) -> y (N, d1 d2 ...): every axis but the first flattened into one."""

    def forward(self, x):
        self.save_for_backward(x.shape)
        return backend_of(x).xp.reshape(x, (x.shape[0], -1))

    def backward(self, grad_output, input_grad=True):
        return backend_of(grad_output).xp.reshape(grad_output, self.saved_for_backward())


class Unflatten(Module):
    """x (N, d1 d2 ...) -> y (N, *shape), e.g. from a dense layer into a convolutional decoder.

    The input's features must number d1 d2 ... exactly.

    Args:
        shape: the sizes (d1, d2, ...) of one sample's output, each >= 1.

    Raises:
        TypeError: shape is not a non-empty list or tuple of integers.
    """

    def __init__(self, shape):
        super().__init__()
        if not isinstance(shape, (list, tuple)) or not shape:
            raise TypeError(f"Unflatten's shape must be a non-empty list of sizes, got {shape!r}")
        self.shape = tuple(arguments.integer(f"shape[{i}]", size) for i, size in enumerate(shape))

    def forward(self, x):
        check_input(x, ndim=2, name="Unflatten", sizes={1: math.prod(self.shape)})
        return backend_of(x).xp.reshape(x, (x.shape[0], *self.shape))

    def backward(self, grad_output, input_grad=True):
        return backend_of(grad_output).xp.reshape(grad_output, (grad_output.shape[0], -1))

    def config(self):
        return {"shape": list(self.shape)}
