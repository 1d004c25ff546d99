"""Regularisation applied to gradients between backward and the optimiser step:
gradient clipping by global norm, and L1 / L2 penalties on the weights."""

from __future__ import annotations

from ..backends import backend_of


def clip_grad_norm(parameters, max_norm: float):
    """Scale all gradients by min(1, max_norm / ||g||), ||g|| the norm of all of them together.

    The gradients are scaled in place, with no read of a value to the host (safe in a CUDA graph).

    Args:
        parameters: the Parameters whose `.grad` to clip (those without a gradient are skipped).
        max_norm: the largest global norm allowed.

    Returns:
        norm: ||g|| before clipping, a 0-d array left on the device (0.0 when no parameter has a
            gradient).
    """
    grads = [p.grad for p in parameters if p.grad is not None]
    if not grads:
        return 0.0
    xp = backend_of(grads[0]).xp
    total = xp.sqrt(sum(xp.sum(g * g) for g in grads))
    scale = xp.clip(max_norm / (total + 1e-6), max=1.0)  # no host value: CUDA-graph safe
    for grad in grads:
        grad *= scale
    return total


class L1L2:
    """Penalty l1 * sum |w| + l2 / 2 * sum w^2 over the weights.

    The weights are the parameters with two or more axes; biases and normalisation scales are left
    alone. Distinct from an optimiser's weight decay: the penalty is part of the loss, so Adam
    rescales its gradient like any other. Give it to `Trainer(penalty=...)`.

    Args:
        l1: the L1 weight, >= 0.
        l2: the L2 weight, >= 0.

    Raises:
        ValueError: a negative weight.
    """

    def __init__(self, l1: float = 0.0, l2: float = 0.0):
        if l1 < 0 or l2 < 0:
            raise ValueError(f"penalty weights must be >= 0, got l1={l1}, l2={l2}")
        self.l1, self.l2 = l1, l2

    def apply(self, parameters):
        """Add the penalty's gradient to each weight's `.grad` (a frozen weight's is left alone).

        Args:
            parameters: the model's Parameters.

        Returns:
            penalty: the penalty's value, a 0-d array (0.0 where nothing is penalised).
        """
        terms = []
        for parameter in parameters:
            w = parameter.data
            xp = backend_of(w).xp
            if w.ndim < 2:
                continue
            grad = xp.zeros_like(w)
            if self.l1:
                terms.append(self.l1 * xp.sum(xp.abs(w)))
                grad += self.l1 * xp.sign(w)  # d|w|/dw = sign(w)
            if self.l2:
                terms.append((self.l2 / 2) * xp.sum(w * w))
                grad += self.l2 * w
            parameter.accumulate(grad)
        return sum(terms[1:], terms[0]) if terms else 0.0
