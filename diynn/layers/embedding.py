"""The embedding lookup table: a thin module over `diynn.functional.embedding`."""

from .. import arguments
from .. import functional as F
from ..backends import get_backend
from ..init import as_generator
from ..module import Module, Parameter


class Embedding(Module):
    """A table of num_embeddings vectors: y[..., :] = weight[indices[...], :], as PyTorch's Embedding.

    The input is integer indices, so there is no input gradient: `backward` adds dL/dweight to the
    weight's gradient (rows that occur several times add up) and returns None.

    Shapes: indices (N, ...) of any integer dtype, each in [0, num_embeddings) -> y (N, ...,
    embedding_dim) of the weight's dtype; `weight` (num_embeddings, embedding_dim), initialised from
    N(0, 1) as in PyTorch, its padding_idx row zero.

    Args:
        num_embeddings: V, the number of rows.
        embedding_dim: D, each row's length.
        padding_idx: a row (negative: counted from the end) that starts at zero and gets no
            gradient, e.g. the index of a padding token; None (default) for none.
        rng: seed or Generator for the initial weight.
        dtype: the weight's dtype (default float32).

    Raises:
        ValueError: a padding_idx outside [-num_embeddings, num_embeddings).
    """

    takes_indices = True

    def __init__(self, num_embeddings, embedding_dim, padding_idx=None, rng=None, dtype=None):
        super().__init__()
        dtype = get_backend().xp.float32 if dtype is None else dtype
        self.num_embeddings = arguments.integer("num_embeddings", num_embeddings)
        self.embedding_dim = arguments.integer("embedding_dim", embedding_dim)
        if padding_idx is not None:
            low = -self.num_embeddings
            padding_idx = arguments.integer("padding_idx", padding_idx, minimum=low)
            if padding_idx >= self.num_embeddings:
                raise ValueError(f"padding_idx must be in [{low}, {self.num_embeddings}), got {padding_idx}")
            padding_idx %= self.num_embeddings
        self.padding_idx = padding_idx
        weight = as_generator(rng).normal((self.num_embeddings, self.embedding_dim), dtype=dtype)
        if padding_idx is not None:
            weight[padding_idx, :] = 0
        self.weight = Parameter(weight)

    def forward(self, indices):
        y, cache = F.embedding(indices, self.weight.data, self.padding_idx)
        self.save_for_backward(cache)
        return y

    def backward(self, grad_output, input_grad=True):
        cache = self.saved_for_backward()
        if self.weight.requires_grad:
            self.accumulate_grads(weight=F.embedding_backward(cache, grad_output))
        return None

    @classmethod
    def stored_size(cls, config):
        rows = arguments.integer("num_embeddings", config["num_embeddings"])
        return rows * arguments.integer("embedding_dim", config["embedding_dim"])

    def config(self):
        return {
            "num_embeddings": self.num_embeddings,
            "embedding_dim": self.embedding_dim,
            "padding_idx": self.padding_idx,
        }
