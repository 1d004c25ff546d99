"""Inverted dropout."""

from backends import backend_of

from .. import arguments
from ..init import as_generator, following
from ..module import Module


class Dropout(Module):
    """Training: y = x * mask / (1 - p), mask ~ Bernoulli(1 - p); eval: y = x. Any shape.

    rng: seed or Generator for the masks (explicit, so runs are reproducible).
    """

    def __init__(self, p=0.5, rng=None):
        super().__init__()
        self.p = arguments.real("p (the dropout probability)", p, low=0, high=1, high_open=True)
        self.rng = as_generator(rng)

    def forward(self, x):
        if not self.training or self.p == 0:
            self.scale = None
            return x
        xp = backend_of(x).xp
        self.rng = following(self.rng, x)
        keep = self.rng.uniform(0.0, 1.0, tuple(x.shape), dtype=x.dtype) >= self.p
        self.scale = xp.astype(keep, x.dtype) / (1 - self.p)
        return x * self.scale

    def backward(self, grad_output, input_grad=True):
        # dy/dx = mask / (1 - p)
        return grad_output if self.scale is None else grad_output * self.scale

    def config(self):
        return {"p": self.p}
