"""Shape changes between convolutional, dense and sequence parts of a network: Flatten, Unflatten
and Permute (no arithmetic: the backward puts the gradient back in the input's shape)."""

import math

from .. import arguments
from ..backends import backend_of
from ..checks import check_input
from ..module import Module


class Flatten(Module):
    """Axes start_dim to end_dim flattened into one, as PyTorch's Flatten: by default every axis but
    the first, x (N, d1, d2, ...) -> y (N, d1 d2 ...); Flatten(2) makes a feature map (N, C, H, W)
    a sequence (N, C, H W).

    Args:
        start_dim: the first axis to flatten (negative: counted from the end).
        end_dim: the last axis to flatten (negative: counted from the end).

    Raises:
        TypeError: an axis that is not an integer.
    """

    def __init__(self, start_dim=1, end_dim=-1):
        super().__init__()
        for name, axis in (("start_dim", start_dim), ("end_dim", end_dim)):
            if isinstance(axis, bool) or not isinstance(axis, int):
                raise TypeError(f"Flatten's {name} must be an integer, got {axis!r}")
        self.start_dim, self.end_dim = start_dim, end_dim

    def forward(self, x):
        ndim = getattr(x, "ndim", 0)
        start, end = self.start_dim % max(ndim, 1), self.end_dim % max(ndim, 1)
        if not (-ndim <= self.start_dim < ndim and -ndim <= self.end_dim < ndim) or start > end:
            raise ValueError(
                f"Flatten(start_dim={self.start_dim}, end_dim={self.end_dim}) needs axes in order within the "
                f"input's {ndim}, got shape {tuple(getattr(x, 'shape', ()))}"
            )
        self.save_for_backward(x.shape)
        shape = (*x.shape[:start], math.prod(x.shape[start : end + 1]), *x.shape[end + 1 :])
        return backend_of(x).xp.reshape(x, shape)

    def backward(self, grad_output, input_grad=True):
        return backend_of(grad_output).xp.reshape(grad_output, self.saved_for_backward())

    def config(self):
        return {"start_dim": self.start_dim, "end_dim": self.end_dim}


class Permute(Module):
    """The axes reordered, y = x.permute(dims), as torchvision's Permute: Permute((0, 2, 1)) makes
    (N, E, L) channels-first features a sequence of tokens (N, L, E).

    Backward: dL/dy permuted back by the inverse order.

    Args:
        dims: the input's axis at each output position, an ordering of 0, ..., ndim - 1.

    Raises:
        TypeError: dims that is not a list or tuple of integers.
        ValueError: dims that is not an ordering of 0, ..., len(dims) - 1.
    """

    def __init__(self, dims):
        super().__init__()
        if not isinstance(dims, (list, tuple)) or not all(isinstance(d, int) and not isinstance(d, bool) for d in dims):
            raise TypeError(f"Permute's dims must be a list of axes, got {dims!r}")
        if sorted(dims) != list(range(len(dims))):
            raise ValueError(f"Permute's dims must order the axes 0 to {len(dims) - 1}, each once, got {list(dims)}")
        self.dims = tuple(dims)

    def forward(self, x):
        check_input(x, ndim=len(self.dims), name=f"Permute{self.dims}")
        return backend_of(x).xp.permute_dims(x, self.dims)

    def backward(self, grad_output, input_grad=True):
        # y's axis i is x's axis dims[i]: x's axis dims[i] comes back from y's axis i
        inverse = tuple(sorted(range(len(self.dims)), key=self.dims.__getitem__))
        return backend_of(grad_output).xp.permute_dims(grad_output, inverse)

    def config(self):
        return {"dims": list(self.dims)}


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
