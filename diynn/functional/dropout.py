"""Inverted dropout as a functional pair."""

from ..backends import backend_of
from ..checks import check_gradient


def dropout(x, p, rng, training=True):
    """Training: y = x mask / (1 - p), mask ~ Bernoulli(1 - p) drawn from `rng` (a backend
    Generator on x's backend); otherwise (or p = 0) y = x. Any shape. Cache: the scale
    mask / (1 - p), or None where y = x."""
    if not training or p == 0:
        return x, None
    xp = backend_of(x).xp
    keep = rng.uniform(0.0, 1.0, tuple(x.shape), dtype=x.dtype) >= p
    scale = xp.astype(keep, x.dtype) / (1 - p)
    return x * scale, scale


def dropout_backward(scale, grad_y):
    # dy/dx = mask / (1 - p)
    if scale is None:
        return grad_y
    check_gradient(grad_y, scale.shape, scale.dtype, "dropout_backward")
    return grad_y * scale
