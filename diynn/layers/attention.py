"""Multi-head attention: a thin module over `diynn.functional.scaled_dot_product_attention`, with
PyTorch's parameter names and layouts, so that a torch.nn.MultiheadAttention's state_dict loads."""

from __future__ import annotations

import math
from typing import NamedTuple

from .. import arguments
from .. import functional as F
from ..backends import backend_of, get_backend
from ..checks import check_input, check_same_backend
from ..init import as_generator, following, initial_weight
from ..module import Module, Parameter
from .linear import Linear


class MultiheadCache(NamedTuple):
    """One forward's state: the input projections' linear caches (one for self-attention, the
    three of q, k, v otherwise), the attention's cache, the sizes (batch N, query length L) and
    whether the inputs came sequence first (batch_first=False)."""

    projections: tuple
    attention: object
    batch: int
    length: int
    sequence_first: bool


class MultiheadAttention(Module):
    """Multi-head attention, y = concat_h(attention(q W_q^h, k W_k^h, v W_v^h)) W_o^T + b_o, as
    torch.nn.MultiheadAttention.

    Each of the `num_heads` heads attends with its own slice of E / num_heads features:
    q, k, v = query W_q^T + b_q, key W_k^T + b_k, value W_v^T + b_v, split into heads;
    softmax(q k^T / sqrt(E / num_heads) + mask) v per head (dropout on the weights while training);
    the heads concatenated and projected by `out_proj`.

    The parameters are PyTorch's, named and laid out as there: `in_proj_weight` (3E, E) holds W_q,
    W_k and W_v stacked, `in_proj_bias` (3E,) the three biases, `out_proj` is a Linear(E, E)
    (`out_proj.weight`, `out_proj.bias`). in_proj_weight and out_proj.weight are Xavier-uniform,
    the biases 0.

    Where diynn differs from PyTorch: the forward returns the output only, not the pair (output,
    weights): the attention weights are not returned, as torch's need_weights=False; `backward` is
    explicit and returns the inputs' gradients (see `backward`); there is no kdim/vdim, add_bias_kv,
    add_zero_attn or is_causal (pass the causal mask as attn_mask). A query whose every key is
    masked attends to nothing: the heads give 0 there (y = out_proj's bias) and no gradient, as
    torch's MultiheadAttention with need_weights=False (with the weights returned, its default,
    it gives NaN).

    Args:
        embed_dim: E, the features of query, key, value and output.
        num_heads: the number of heads; it divides embed_dim.
        dropout: the probability of dropping an attention weight while training, in [0, 1).
        bias: whether the projections have biases (in_proj_bias and out_proj.bias).
        batch_first: True (default): sequences come as (N, L, E); False: as (L, N, E), as
            PyTorch's default.
        rng: seed or Generator for the initial weights and the dropout masks.
        dtype: the parameters' dtype; None: float32.

    Shapes:
        query: (N, L, E), key and value: (N, S, E) -> (N, L, E), all of the parameters' dtype
        (with batch_first=False: (L, N, E), (S, N, E) -> (L, N, E)).

    Raises:
        ValueError: num_heads that does not divide embed_dim, or a dropout outside [0, 1).
    """

    def __init__(self, embed_dim, num_heads, dropout=0.0, bias=True, batch_first=True, rng=None, dtype=None):
        super().__init__()
        xp = get_backend().xp
        dtype = xp.float32 if dtype is None else dtype
        embed_dim, num_heads = arguments.integer("embed_dim", embed_dim), arguments.integer("num_heads", num_heads)
        if embed_dim % num_heads:
            raise ValueError(f"MultiheadAttention's num_heads must divide embed_dim, got {num_heads} and {embed_dim}")
        self.embed_dim, self.num_heads = embed_dim, num_heads
        self.dropout = arguments.real(
            "dropout (the attention dropout probability)", dropout, low=0, high=1, high_open=True
        )
        self.batch_first = bool(batch_first)
        self.rng = as_generator(rng)
        in_proj = initial_weight((3 * embed_dim, embed_dim), embed_dim, 3 * embed_dim, "xavier", self.rng, dtype)
        self.in_proj_weight = Parameter(in_proj)
        self.in_proj_bias = Parameter(xp.zeros(3 * embed_dim, dtype=dtype)) if bias else None
        self.out_proj = Linear(embed_dim, embed_dim, bias=bias, init="xavier", rng=self.rng, dtype=dtype)

    def forward(self, query, key=None, value=None, key_padding_mask=None, attn_mask=None):
        """The attention of `query` to `key` and `value` (self-attention when both are None).

        The masks follow torch.nn.MultiheadAttention: a boolean mask is True where a query may NOT
        attend to a key (the opposite of `scaled_dot_product_attention`'s boolean mask); a
        floating-point mask (of the parameters' dtype) is added to the logits. Both masks apply
        where both are given.

        Args:
            query: (N, L, E).
            key: (N, S, E), or None (with value None): self-attention, key = value = query.
            value: (N, S, E), or None (with key None).
            key_padding_mask: None, or (N, S): the keys each sequence ignores (its padding).
            attn_mask: None, or (L, S) for every sequence and head, or (N * num_heads, L, S) (the
                sequence n's head h at index n * num_heads + h).

        Returns:
            y: (N, L, E) of the parameters' dtype ((L, N, E) with batch_first=False).

        Raises:
            ValueError: shapes that do not fit, or one of key and value given without the other.
            TypeError: inputs on another backend or of another dtype than the parameters.
        """
        if (key is None) != (value is None):
            raise ValueError("MultiheadAttention takes both key and value, or neither (self-attention)")
        self_attention = key is None
        like = self.in_proj_weight.data
        check_input(query, ndim=3, name="MultiheadAttention's query", sizes={2: self.embed_dim}, like=like)
        query = self._batch_first(query)
        batch, length = query.shape[:2]
        if self_attention:
            key = value = query
        else:
            for name, array in (("key", key), ("value", value)):
                check_input(array, ndim=3, name=f"MultiheadAttention's {name}", sizes={2: self.embed_dim}, like=like)
            key, value = self._batch_first(key), self._batch_first(value)
            if key.shape[:2] != value.shape[:2] or key.shape[0] != batch:
                raise ValueError(
                    "MultiheadAttention expects key and value of the same (N, S) and the query's N, got query "
                    f"{tuple(query.shape)}, key {tuple(key.shape)}, value {tuple(value.shape)} (batch first)"
                )
        keys = key.shape[1]
        xp = backend_of(query).xp
        mask = self._mask(key_padding_mask, attn_mask, batch, length, keys)
        q, k, v, projections = self._project(xp, query, key, value, self_attention)
        dropout_p = self.dropout if self.training else 0.0
        if dropout_p:
            self.rng = following(self.rng, query)
        heads, attention = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=dropout_p, rng=self.rng)
        # (N, H, L, D) -> (N, L, H, D) -> (N L, E): the heads side by side
        merged = xp.reshape(xp.permute_dims(heads, (0, 2, 1, 3)), (batch * length, self.embed_dim))
        y = xp.reshape(self.out_proj(merged), (batch, length, self.embed_dim))  # called: its hooks run
        self.save_for_backward(MultiheadCache(projections, attention, batch, length, not self.batch_first))
        return self._batch_first(y)

    def backward(self, grad_output, input_grad=True):
        """The inputs' gradients; adds the parameters' gradients to their `.grad`.

        Args:
            grad_output: dL/dy, y's shape and dtype.
            input_grad: False: the inputs' gradients are not computed (None is returned).

        Returns:
            For self-attention (key and value None in the forward): dL/dquery, one array, the sum
            of what reaches the input through q, k and v. Otherwise the tuple (dL/dquery, dL/dkey,
            dL/dvalue), each of its input's shape (sum them where the same array went in twice).
        """
        projections, attention, batch, length, sequence_first = self.saved_for_backward()
        xp = backend_of(grad_output).xp
        grad_y = xp.permute_dims(grad_output, (1, 0, 2)) if sequence_first else grad_output
        grad_merged = self.out_proj.run_backward(xp.reshape(grad_y, (batch * length, self.embed_dim)))
        heads = self.num_heads
        grad_heads = xp.permute_dims(xp.reshape(grad_merged, (batch, length, heads, -1)), (0, 2, 1, 3))
        grad_q, grad_k, grad_v = F.scaled_dot_product_attention_backward(attention, grad_heads)
        grad_q, grad_k, grad_v = (self._merge_heads(xp, grad) for grad in (grad_q, grad_k, grad_v))
        params = self.wants_parameter_grads()
        if len(projections) == 1:  # one product x [W_q; W_k; W_v]^T: its gradient's columns side by side
            grad_x, grad_weight, grad_bias = F.linear_backward(
                projections[0], xp.concat([grad_q, grad_k, grad_v], axis=1), input_grad, params
            )
            self.accumulate_grads(in_proj_weight=grad_weight, in_proj_bias=grad_bias)
            return _as_input(xp, grad_x, batch, sequence_first)
        grads = [
            F.linear_backward(cache, grad, input_grad, params)
            for cache, grad in zip(projections, (grad_q, grad_k, grad_v))
        ]
        if params:
            self.accumulate_grads(
                in_proj_weight=xp.concat([grads[0][1], grads[1][1], grads[2][1]], axis=0),
                in_proj_bias=None if self.in_proj_bias is None else xp.concat([g[2] for g in grads], axis=0),
            )
        if not input_grad:
            return None
        return tuple(_as_input(xp, grad_x, batch, sequence_first) for grad_x, _, _ in grads)

    def _project(self, xp, query, key, value, self_attention):
        """q, k, v split into heads, (N, H, length, D), and the projections' linear caches."""
        weight = self.in_proj_weight.data
        bias = None if self.in_proj_bias is None else self.in_proj_bias.data
        e = self.embed_dim
        if self_attention:  # one product with the stacked weights, then its columns split
            qkv, cache = F.linear(self._rows(xp, query), weight, bias)
            q, k, v = qkv[:, :e], qkv[:, e : 2 * e], qkv[:, 2 * e :]
            projections = (cache,)
        else:
            rows = [slice(i * e, (i + 1) * e) for i in range(3)]  # W_q, W_k, W_v
            outputs = [
                F.linear(self._rows(xp, x), weight[part, :], None if bias is None else bias[part])
                for part, x in zip(rows, (query, key, value))
            ]
            (q, k, v), projections = zip(*outputs)
        sizes = (query.shape[:2], key.shape[:2], value.shape[:2])
        q, k, v = (self._split_heads(xp, x, size) for x, size in zip((q, k, v), sizes))
        return q, k, v, tuple(projections)

    def _rows(self, xp, x):
        """(N, length, E) -> (N length, E), the rows a linear layer takes."""
        return xp.reshape(x, (x.shape[0] * x.shape[1], self.embed_dim))

    def _split_heads(self, xp, x, size):
        """(N length, E) -> (N, H, length, D): head h holds features h D to (h + 1) D - 1."""
        batch, length = size
        return xp.permute_dims(xp.reshape(x, (batch, length, self.num_heads, -1)), (0, 2, 1, 3))

    def _merge_heads(self, xp, x):
        """(N, H, length, D) -> (N length, E), the inverse of _split_heads."""
        batch, _, length, _ = x.shape
        return xp.reshape(xp.permute_dims(x, (0, 2, 1, 3)), (batch * length, self.embed_dim))

    def _batch_first(self, x):
        """(length, N, E) <-> (N, length, E) where batch_first is False; x itself otherwise."""
        return x if self.batch_first else backend_of(x).xp.permute_dims(x, (1, 0, 2))

    def _mask(self, key_padding_mask, attn_mask, batch, length, keys):
        """The two masks as one for scaled_dot_product_attention, broadcasting to (N, H, L, S): a
        boolean one (True: may attend) where both are boolean, else an additive one."""
        like = self.in_proj_weight.data
        xp = backend_of(like).xp
        masks = []
        if key_padding_mask is not None:
            self._check_mask("key_padding_mask", key_padding_mask, [(batch, keys)])
            masks.append(xp.reshape(key_padding_mask, (batch, 1, 1, keys)))
        if attn_mask is not None:
            self._check_mask("attn_mask", attn_mask, [(length, keys), (batch * self.num_heads, length, keys)])
            masks.append(
                xp.reshape(attn_mask, (-1, self.num_heads, length, keys)) if attn_mask.ndim == 3 else attn_mask
            )
        if not masks:
            return None
        if all(xp.isdtype(mask.dtype, "bool") for mask in masks):
            allowed = xp.logical_not(masks[0])
            return allowed if len(masks) == 1 else xp.logical_and(allowed, xp.logical_not(masks[1]))
        zero = xp.zeros((), dtype=like.dtype, device=like.device)
        additive = [xp.where(mask, -math.inf, zero) if xp.isdtype(mask.dtype, "bool") else mask for mask in masks]
        return additive[0] if len(additive) == 1 else additive[0] + additive[1]

    def _check_mask(self, name, mask, shapes):
        like = self.in_proj_weight.data
        where = f"MultiheadAttention's {name}"
        if not hasattr(mask, "shape") or not hasattr(mask, "dtype"):
            raise TypeError(f"{where} must be an array, got {type(mask).__name__}")
        check_same_backend(mask, like, where)
        if not backend_of(like).xp.isdtype(mask.dtype, "bool") and mask.dtype != like.dtype:
            raise TypeError(f"{where} must be boolean or of the parameters' dtype {like.dtype}, got {mask.dtype}")
        if tuple(mask.shape) not in shapes:
            expected = " or ".join(str(shape) for shape in shapes)
            raise ValueError(f"{where} must have shape {expected}, got {tuple(mask.shape)}")

    @classmethod
    def stored_size(cls, config):
        # out_proj is built here, not passed in the config: its numbers count as this module's
        e = arguments.integer("embed_dim", config["embed_dim"])
        bias = config.get("bias", True)
        return 3 * e * e + e * e + (4 * e if bias else 0)

    def config(self):
        return {
            "embed_dim": self.embed_dim,
            "num_heads": self.num_heads,
            "dropout": self.dropout,
            "bias": self.in_proj_bias is not None,
            "batch_first": self.batch_first,
        }


def _as_input(xp, grad_x, batch, sequence_first):
    """A projection's input gradient (N length, E) as its input came: (N, length, E), or (length, N, E)."""
    if grad_x is None:
        return None
    grad_x = xp.reshape(grad_x, (batch, -1, grad_x.shape[1]))
    return xp.permute_dims(grad_x, (1, 0, 2)) if sequence_first else grad_x
