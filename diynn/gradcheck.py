"""Gradient checks: a module's or a loss's `backward` against central finite differences, in float64.

For a module, the scalar checked is L = sum(module(x) * R) with a fixed random R, so that
dL/d output = R exercises every output element.
"""

from __future__ import annotations

import random

from .backends import get_backend
from .grad_mode import enable_grad, no_grad


class GradcheckError(AssertionError):
    """An analytic gradient differs from its finite-difference estimate."""


def gradcheck(module, x, *, eps=1e-6, rtol=1e-5, atol=1e-7, max_checks=200, seed=0) -> bool:
    """Check d L / d x and d L / d (every parameter) of `module` at input `x`.

    L = sum(module(x) * R) with a fixed random R. The module is converted to float64 in place (its
    parameters keep their values); it is checked in the mode it is in (training or eval), its
    backward consuming the one forward it keeps. An entry passes where
    |analytic - numeric| <= atol + rtol |numeric|.

    Args:
        module: the Module to check (converted to float64 in place).
        x: an input the module takes, converted to float64 on the module's backend; integer
            indices (an Embedding's) are kept as they are, and have no gradient to check.
        eps: the step of the central differences.
        rtol: relative tolerance.
        atol: absolute tolerance.
        max_checks: at most this many entries of each array are checked, chosen at random.
        seed: seeds R and the choice of entries.

    Returns:
        True when every checked entry passes.

    Raises:
        GradcheckError: an entry fails, or a gradient is missing or of the wrong shape (the message
            names the array, the entry and both values).
    """
    backend = module.backend or get_backend()
    xp = backend.xp
    module.astype(xp.float64)
    x = backend.asarray(x)
    indices = xp.isdtype(x.dtype, "integral")
    x = x if indices else xp.astype(x, xp.float64)
    with no_grad():
        weights = backend.rng(seed).normal(tuple(module.forward(x).shape), dtype=xp.float64)

    def objective():
        with no_grad():
            return float(xp.sum(module.forward(x) * weights))

    module.zero_grad()
    with enable_grad():  # in eval mode too
        module.forward(x)
    grad_x = module.backward(weights)
    if indices and grad_x is not None:
        raise GradcheckError("input: integer indices have no gradient, but backward returned one")
    arrays = [] if indices else [("input", x, grad_x)]
    arrays += [(name, p.data, p.grad) for name, p in module.named_parameters()]
    for name, array, analytic in arrays:
        _compare(name, array, analytic, objective, eps, rtol, atol, max_checks, seed)
    return True


def gradcheck_loss(loss, prediction, target, *, eps=1e-6, rtol=1e-5, atol=1e-7, max_checks=200, seed=0) -> bool:
    """Check `loss.backward()` (d loss / d prediction) at (prediction, target), in float64.

    Args:
        loss: the Loss to check.
        prediction: converted to float64 on the active backend.
        target: floating-point targets are converted to float64, integer labels kept.
        eps: the step of the central differences.
        rtol: relative tolerance.
        atol: absolute tolerance.
        max_checks: at most this many entries of the prediction are checked, chosen at random.
        seed: seeds the choice of entries.

    Returns:
        True when every checked entry passes.

    Raises:
        GradcheckError: an entry fails (the message names the entry and both values).
    """
    backend = get_backend()
    xp = backend.xp
    prediction = xp.astype(backend.asarray(prediction), xp.float64)
    if xp.isdtype(target.dtype, "real floating"):
        target = xp.astype(target, xp.float64)
    loss.forward(prediction, target)
    analytic = loss.backward()

    def objective():
        with no_grad():
            return float(loss.forward(prediction, target))

    _compare("prediction", prediction, analytic, objective, eps, rtol, atol, max_checks, seed)
    return True


def _compare(name, array, analytic, objective, eps, rtol, atol, max_checks, seed):
    if analytic is None:
        raise GradcheckError(f"{name}: backward left no gradient")
    if tuple(analytic.shape) != tuple(array.shape):
        raise GradcheckError(f"{name}: gradient shape {tuple(analytic.shape)} != {tuple(array.shape)}")
    size = 1
    for length in array.shape:
        size *= length
    flat_indices = range(size) if size <= max_checks else random.Random(seed).sample(range(size), max_checks)
    for flat in flat_indices:
        index = _unravel(flat, array.shape)
        original = float(array[index])
        array[index] = original + eps
        plus = objective()
        array[index] = original - eps
        minus = objective()
        array[index] = original
        numeric = (plus - minus) / (2 * eps)
        value = float(analytic[index])
        if abs(value - numeric) > atol + rtol * abs(numeric):
            raise GradcheckError(f"{name}{list(index)}: backward gives {value:.10g}, finite differences {numeric:.10g}")


def _unravel(flat: int, shape) -> tuple:
    index = []
    for length in reversed(shape):
        flat, position = divmod(flat, length)
        index.append(position)
    return tuple(reversed(index))
