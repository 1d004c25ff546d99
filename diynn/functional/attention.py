"""Scaled dot-product attention as a functional pair: y = softmax(q k^T / sqrt(E) + mask) v, the
softmax taken over the keys with the max shift, dropout on the attention weights, and the backward
written out through the softmax (docs/derivations/transformer.md).

A query row whose every key is masked attends to nothing: its weights are 0, so its output is 0 and
no gradient flows through it (PyTorch's scaled_dot_product_attention does the same; its
MultiheadAttention returning the weights gives NaN there).

The products go through the backend's `matmul`, batched over the leading axes (on CuPy, not while
a CUDA graph records: its recorded cuBLAS product is of two matrices).
"""

from __future__ import annotations

import math
from typing import NamedTuple

from .. import arguments
from ..backends import Generator, backend_of
from ..checks import check_gradient, check_same_backend
from .dropout import dropout, dropout_backward


class AttentionCache(NamedTuple):
    """What the backward needs: the inputs q (..., L, E), k (..., S, E), v (..., S, Ev); the attention
    weights P (..., L, S) before dropout; the dropout's scale mask / (1 - p) (P's shape), or None
    without dropout; and the factor 1 / sqrt(E) the logits were scaled by."""

    q: object
    k: object
    v: object
    weights: object
    dropout_scale: object
    scale: float


def scaled_dot_product_attention(q, k, v, attn_mask=None, is_causal=False, dropout_p=0.0, rng=None):
    """y = dropout(softmax(q k^T / sqrt(E) + mask)) v, the softmax over the keys.

    Every axis before the last two is a batch axis (batch, heads, ...), the same in q, k and v.

    Args:
        q: the queries, (..., L, E) floating point.
        k: the keys, (..., S, E) of q's dtype.
        v: the values, (..., S, Ev) of q's dtype.
        attn_mask: None, or a mask broadcasting to (..., L, S): boolean, True where query l may
            attend to key s (as in PyTorch's scaled_dot_product_attention); or of q's dtype, added to
            the logits (-inf masks an entry out).
        is_causal: query l attends to keys s <= l only (the top-left aligned lower triangle, as in
            PyTorch); with an attn_mask too, both apply.
        dropout_p: the probability of dropping an attention weight, in [0, 1): applied whenever it
            is not 0 (there is no training flag; the layer passes 0 in evaluation).
        rng: the backend Generator (on q's backend) the dropout mask is drawn from; needed when
            dropout_p > 0.

    Returns:
        (y, cache): y (..., L, Ev) of q's dtype, and the cache for
            `scaled_dot_product_attention_backward`. A query whose every key is masked gets
            weights 0 and y = 0 there.

    Raises:
        ValueError: shapes that do not fit together, a mask that does not broadcast to (..., L, S),
            a dropout_p outside [0, 1), or dropout without an rng.
        TypeError: arrays of different backends or dtypes, or a mask neither boolean nor of q's dtype.
    """
    _check_inputs(q, k, v)
    dropout_p = arguments.real("dropout_p", dropout_p, low=0, high=1, high_open=True)
    if dropout_p and not isinstance(rng, Generator):
        raise ValueError(f"scaled_dot_product_attention with dropout_p={dropout_p} needs rng, a backend Generator")
    backend = backend_of(q)
    xp = backend.xp
    scale = 1 / math.sqrt(q.shape[-1])
    logits = backend.matmul(q, xp.matrix_transpose(k)) * scale  # (..., L, S)
    logits = _masked(backend, logits, attn_mask, is_causal)
    weights = _softmax_over_keys(xp, logits)
    dropped, dropout_scale = dropout(weights, dropout_p, rng, training=dropout_p > 0)
    y = backend.matmul(dropped, v)
    return y, AttentionCache(q, k, v, weights, dropout_scale, scale)


def scaled_dot_product_attention_backward(cache, grad_y):
    """The gradients of `scaled_dot_product_attention` with respect to q, k and v.

    A mask gets no gradient (an additive mask is taken as a constant).

    Args:
        cache: the cache the forward returned.
        grad_y: dL/dy, (..., L, Ev) of y's dtype.

    Returns:
        (grad_q, grad_k, grad_v): of the shapes and dtype of q, k and v.
    """
    q, k, v, weights, dropout_scale, scale = cache
    check_gradient(grad_y, (*q.shape[:-1], v.shape[-1]), q.dtype, "scaled_dot_product_attention_backward")
    backend = backend_of(grad_y)
    xp = backend.xp
    dropped = weights if dropout_scale is None else weights * dropout_scale
    # y = A v, A the dropped-out weights: dL/dv = A^T dL/dy, dL/dA = dL/dy v^T
    grad_v = backend.matmul(xp.matrix_transpose(dropped), grad_y)
    grad_weights = dropout_backward(dropout_scale, backend.matmul(grad_y, xp.matrix_transpose(v)))
    # P = softmax(Z) over each row: dL/dZ = P (dL/dP - rowsum(dL/dP P)); a masked entry has P = 0
    # and so no gradient, a row with every key masked (P = 0) none at all
    grad_logits = weights * (grad_weights - xp.sum(grad_weights * weights, axis=-1, keepdims=True))
    grad_logits = grad_logits * scale  # Z = q k^T / sqrt(E) (+ a constant mask)
    grad_q = backend.matmul(grad_logits, k)
    grad_k = backend.matmul(xp.matrix_transpose(grad_logits), q)
    return grad_q, grad_k, grad_v


def _softmax_over_keys(xp, logits):
    """softmax over the last axis with the max shift; a row of -inf only (every key masked) gives 0s."""
    top = xp.max(logits, axis=-1, keepdims=True)
    top = xp.where(xp.isfinite(top), top, 0.0)  # a masked row's max is -inf: exp(-inf - 0) = 0
    e = xp.exp(logits - top)
    total = xp.sum(e, axis=-1, keepdims=True)
    return e / xp.where(total > 0, total, 1.0)


def _masked(backend, logits, attn_mask, is_causal):
    """The logits with `attn_mask` (boolean: True takes part; float: added) and the causal mask applied."""
    xp = backend.xp
    allowed = None
    if is_causal:
        length, keys = logits.shape[-2:]
        rows = xp.arange(length, device=backend.device)
        allowed = xp.arange(keys, device=backend.device)[None, :] <= rows[:, None]  # (L, S)
    if attn_mask is not None:
        _check_mask(attn_mask, logits)
        if xp.isdtype(attn_mask.dtype, "bool"):
            allowed = attn_mask if allowed is None else xp.logical_and(attn_mask, allowed)
        else:
            logits = logits + attn_mask
    if allowed is not None:
        logits = xp.where(allowed, logits, -math.inf)
    return logits


def _check_inputs(q, k, v):
    name = "scaled_dot_product_attention"
    for label, array in (("q", q), ("k", k), ("v", v)):
        if not hasattr(array, "ndim") or not hasattr(array, "dtype"):
            raise TypeError(f"{name} expects {label} as an array, got {type(array).__name__}")
        if array.ndim < 2:
            raise ValueError(f"{name} expects {label} with at least 2 axes (..., length, features), got {array.shape}")
    xp = backend_of(q).xp
    if not xp.isdtype(q.dtype, "real floating"):
        raise TypeError(f"{name} expects floating-point q, k and v, got {q.dtype}")
    for label, array in (("k", k), ("v", v)):
        check_same_backend(array, q, f"{name}'s {label}")
        if array.dtype != q.dtype:
            raise TypeError(f"{name} expects {label} of q's dtype {q.dtype}, got {array.dtype}")
    if not (q.ndim == k.ndim == v.ndim and q.shape[:-2] == k.shape[:-2] == v.shape[:-2]):
        raise ValueError(
            f"{name} expects q, k and v with the same batch axes (..., ·, ·), got {tuple(q.shape)}, "
            f"{tuple(k.shape)}, {tuple(v.shape)}"
        )
    if k.shape[-1] != q.shape[-1]:
        raise ValueError(f"{name} expects k with q's feature size E = {q.shape[-1]}, got k of shape {tuple(k.shape)}")
    if v.shape[-2] != k.shape[-2]:
        raise ValueError(f"{name} expects as many values as keys (S = {k.shape[-2]}), got v of shape {tuple(v.shape)}")


def _check_mask(mask, logits):
    name = "scaled_dot_product_attention's attn_mask"
    if not hasattr(mask, "ndim") or not hasattr(mask, "dtype"):
        raise TypeError(f"{name} must be an array, got {type(mask).__name__}")
    check_same_backend(mask, logits, name)
    xp = backend_of(logits).xp
    if not xp.isdtype(mask.dtype, "bool") and mask.dtype != logits.dtype:
        raise TypeError(f"{name} must be boolean or of the inputs' dtype {logits.dtype}, got {mask.dtype}")
    fits = mask.ndim <= logits.ndim and all(
        size in (1, target) for size, target in zip(reversed(mask.shape), reversed(logits.shape))
    )
    if not fits:
        raise ValueError(
            f"{name} of shape {tuple(mask.shape)} does not broadcast to the logits' (..., L, S) = {tuple(logits.shape)}"
        )
