"""The layers a vision transformer puts around its encoder blocks: thin modules over
`diynn.functional.tokens` (learned position embeddings, a learned class token, the pooling of the
tokens into one vector)."""

from .. import arguments
from .. import functional as F
from ..backends import get_backend
from ..init import as_generator
from ..module import Module, Parameter


class PositionEmbedding(Module):
    """y = x + P: a learned vector per position, added to every sequence (ViT's position embeddings).

    Backward: dL/dx = dL/dy, and P, shared by the batch, gets dL/dy summed over it.

    Shapes: x (N, length, embed_dim) of the parameter's dtype -> y of x's shape; P (`weight`):
    (1, length, embed_dim), drawn from N(0, 0.02^2) as in ViT.

    Args:
        length: L, the number of positions (the tokens of a sequence).
        embed_dim: E, the features of a token.
        rng: seed or Generator for the initial weight.
        dtype: the weight's dtype (default float32).
    """

    def __init__(self, length, embed_dim, rng=None, dtype=None):
        super().__init__()
        dtype = get_backend().xp.float32 if dtype is None else dtype
        self.length = arguments.integer("length", length)
        self.embed_dim = arguments.integer("embed_dim", embed_dim)
        self.weight = Parameter(as_generator(rng).normal((1, self.length, self.embed_dim), std=0.02, dtype=dtype))

    def forward(self, x):
        y, cache = F.position_embedding(x, self.weight.data)
        self.save_for_backward(cache)
        return y

    def backward(self, grad_output, input_grad=True):
        grad_x, grad_weight = F.position_embedding_backward(self.saved_for_backward(), grad_output)
        self.accumulate_grads(weight=grad_weight)
        return grad_x

    @classmethod
    def stored_size(cls, config):
        return arguments.integer("length", config["length"]) * arguments.integer("embed_dim", config["embed_dim"])

    def config(self):
        return {"length": self.length, "embed_dim": self.embed_dim}


class ClassToken(Module):
    """y = [c; x]: a learned token c put in front of every sequence (ViT's [class] token), whose
    output after the encoder (`TokenPool("first")`) stands for the whole sequence.

    Backward: dL/dx = dL/dy[:, 1:], and c, shared by the batch, gets dL/dy[:, 0] summed over it.

    Shapes: x (N, L, embed_dim) of the parameter's dtype -> y (N, L + 1, embed_dim); c (`weight`):
    (1, 1, embed_dim), zeros at first (as torchvision's ViT).

    Args:
        embed_dim: E, the features of a token.
        dtype: the token's dtype (default float32).
    """

    def __init__(self, embed_dim, dtype=None):
        super().__init__()
        xp = get_backend().xp
        dtype = xp.float32 if dtype is None else dtype
        self.embed_dim = arguments.integer("embed_dim", embed_dim)
        self.weight = Parameter(xp.zeros((1, 1, self.embed_dim), dtype=dtype))

    def forward(self, x):
        y, cache = F.class_token(x, self.weight.data)
        self.save_for_backward(cache)
        return y

    def backward(self, grad_output, input_grad=True):
        grad_x, grad_token = F.class_token_backward(self.saved_for_backward(), grad_output)
        self.accumulate_grads(weight=grad_token)
        return grad_x

    @classmethod
    def stored_size(cls, config):
        return arguments.integer("embed_dim", config["embed_dim"])

    def config(self):
        return {"embed_dim": self.embed_dim}


class TokenPool(Module):
    """One vector per sequence: the mean of its tokens ("mean"), or its first token ("first", the
    output of a `ClassToken`).

    Shapes: x (N, L, E) -> y (N, E), of x's dtype.

    Args:
        mode: "mean" (default) or "first".
    """

    def __init__(self, mode="mean"):
        super().__init__()
        self.mode = arguments.choice("mode", mode, F.tokens.POOLING_MODES)

    def forward(self, x):
        y, cache = F.token_pool(x, self.mode)
        self.save_for_backward(cache)
        return y

    def backward(self, grad_output, input_grad=True):
        return F.token_pool_backward(self.saved_for_backward(), grad_output)

    def config(self):
        return {"mode": self.mode}
