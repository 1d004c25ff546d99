"""Where branches of a network meet: their outputs added (a residual connection) or concatenated
(a U-Net's skip connection), as functional pairs. The backward of a meeting point hands each branch
its part of the gradient; the input gradients the branches send back then add up at the fork, which
is the containers' work (diynn.layers.containers)."""

from __future__ import annotations

from typing import NamedTuple

from ..backends import backend_of
from ..checks import check_gradient, check_input


class AddCache(NamedTuple):
    """The output's shape and dtype, to check the gradient against."""

    shape: tuple
    dtype: object


def add(a, b):
    """y = a + b, where two branches meet (a residual connection).

    Args:
        a: one branch's output, any shape.
        b: the other's, of a's shape and dtype (no broadcasting).

    Returns:
        (y, cache): y of a's shape and dtype; the AddCache for `add_backward`.

    Raises:
        ValueError: the shapes differ (the message names both).
        TypeError: b is not an array of a's backend and dtype.
    """
    check_input(b, ndim=getattr(a, "ndim", 0), name="add's second operand", like=a)
    if tuple(a.shape) != tuple(b.shape):
        raise ValueError(f"add: the branches' outputs differ in shape, {tuple(a.shape)} and {tuple(b.shape)}")
    return a + b, AddCache(tuple(a.shape), a.dtype)


def add_backward(cache: AddCache, grad_y):
    """The gradients of `add`: dy/da and dy/db are identities.

    Args:
        cache: the AddCache `add` returned.
        grad_y: dL/dy, of y's shape and dtype.

    Returns:
        (grad_a, grad_b): (dL/dy, dL/dy), the same array twice.
    """
    check_gradient(grad_y, cache.shape, cache.dtype, "add_backward")
    return grad_y, grad_y


class ConcatCache(NamedTuple):
    """Each operand's length along `axis`, the axis, and the output's shape and dtype."""

    sizes: tuple
    axis: int
    shape: tuple
    dtype: object


def concat(arrays, axis=1):
    """y = the arrays joined along `axis`, where branches meet (a U-Net's skip connection).

    Args:
        arrays: a non-empty sequence of arrays of one dtype and number of axes, equal on every axis
            but `axis`: (N, C_i, ...) for axis 1.
        axis: the axis to join along (negative counts from the end).

    Returns:
        (y, cache): y (N, sum C_i, ...) for axis 1; the ConcatCache for `concat_backward`.

    Raises:
        ValueError: no arrays, `axis` out of range, or shapes that differ off `axis`.
        TypeError: operands of different backends or dtypes.
    """
    arrays = list(arrays)
    if not arrays:
        raise ValueError("concat needs at least one array")
    first = arrays[0]
    check_input(first, ndim=getattr(first, "ndim", 0), name="concat's operand 0")
    if not -first.ndim <= axis < first.ndim:
        raise ValueError(f"concat: axis {axis} is out of range for operands with {first.ndim} axes")
    axis %= first.ndim
    for index, array in enumerate(arrays[1:], start=1):
        check_input(array, ndim=first.ndim, name=f"concat's operand {index}", like=first)
        others = [s for i, s in enumerate(array.shape) if i != axis]
        if others != [s for i, s in enumerate(first.shape) if i != axis]:
            raise ValueError(
                f"concat: operand {index} has shape {tuple(array.shape)}, operand 0 {tuple(first.shape)}; "
                f"only axis {axis} may differ"
            )
    y = backend_of(first).xp.concat(arrays, axis=axis)
    return y, ConcatCache(tuple(int(a.shape[axis]) for a in arrays), axis, tuple(y.shape), y.dtype)


def concat_backward(cache: ConcatCache, grad_y):
    """The gradients of `concat`: y's entries are the operands' own, so each gets its slice of dL/dy.

    Args:
        cache: the ConcatCache `concat` returned.
        grad_y: dL/dy, of y's shape and dtype.

    Returns:
        grads: a list of dL/d(operand), one per operand in order, each its slice of grad_y along the
            axis.
    """
    check_gradient(grad_y, cache.shape, cache.dtype, "concat_backward")
    grads, start = [], 0
    for size in cache.sizes:
        index = (slice(None),) * cache.axis + (slice(start, start + size), ...)
        grads.append(grad_y[index])
        start += size
    return grads
