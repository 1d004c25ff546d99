"""Inverted dropout: a thin module over `diynn.functional.dropout`."""

from .. import arguments
from .. import functional as F
from ..init import as_generator, following
from ..module import Module


class Dropout(Module):
    """Inverted dropout: y = x * mask / (1 - p), mask ~ Bernoulli(1 - p), in training; y = x in eval.

    x of any shape -> y of its shape and dtype.

    Args:
        p: the probability of dropping an element, in [0, 1).
        rng: seed or Generator for the masks (explicit, so runs are reproducible).
    """

    def __init__(self, p=0.5, rng=None):
        super().__init__()
        self.p = arguments.real("p (the dropout probability)", p, low=0, high=1, high_open=True)
        self.rng = as_generator(rng)

    def forward(self, x):
        if self.training and self.p:
            self.rng = following(self.rng, x)
        y, cache = F.dropout(x, self.p, self.rng, self.training)
        self.save_for_backward(cache)
        return y

    def backward(self, grad_output, input_grad=True):
        return F.dropout_backward(self.saved_for_backward(), grad_output)

    def config(self):
        return {"p": self.p}
