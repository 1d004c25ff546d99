"""Inverted dropout as a functional pair."""

from ..backends import backend_of
from ..checks import check_gradient


def dropout(x, p, rng, training=True):
    """Inverted dropout: y = x mask / (1 - p) in training, y = x otherwise.

    mask ~ Bernoulli(1 - p), one draw per element, so that E[y] = x and evaluation needs no scaling.

    Args:
        x: input of any shape, floating point.
        p: the probability of dropping an element, in [0, 1).
        rng: the backend Generator (on x's backend) the mask is drawn from.
        training: False (or p = 0) returns x unchanged.

    Returns:
        (y, cache): y of x's shape and dtype; the cache for `dropout_backward`, the scale
            mask / (1 - p) (x's shape and dtype), or None where y = x.
    """
    if not training or p == 0:
        return x, None
    xp = backend_of(x).xp
    keep = rng.uniform(0.0, 1.0, tuple(x.shape), dtype=x.dtype) >= p
    scale = xp.astype(keep, x.dtype) / (1 - p)
    return x * scale, scale


def dropout_backward(scale, grad_y):
    """The gradient of `dropout` with respect to its input.

    Args:
        scale: the cache `dropout` returned (mask / (1 - p), or None).
        grad_y: dL/dy, of y's shape and dtype.

    Returns:
        grad_x: dL/dx = dL/dy mask / (1 - p), x's shape and dtype (grad_y itself where y = x).
    """
    # dy/dx = mask / (1 - p)
    if scale is None:
        return grad_y
    check_gradient(grad_y, scale.shape, scale.dtype, "dropout_backward")
    return grad_y * scale
