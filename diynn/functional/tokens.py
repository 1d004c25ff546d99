"""The ops of a sequence of tokens (N, L, E) that a vision transformer adds around its encoder
blocks, as functional pairs: learned position embeddings added to every sequence, a learned class
token put in front, and the pooling of the tokens into one vector per sequence. A parameter shared
by the batch (a position embedding, the class token) is a variable used N times: its gradient is
the sum over the batch."""

from __future__ import annotations

from typing import NamedTuple

from ..backends import backend_of
from ..checks import check_gradient, check_input

POOLING_MODES = ("mean", "first")


class TokensCache(NamedTuple):
    """The input's shape and dtype: all that these ops' backwards need."""

    shape: tuple
    dtype: object


def position_embedding(x, weight):
    """y = x + P: each position's learned vector added to every sequence of the batch.

    Args:
        x: (N, L, E) tokens.
        weight: P, (1, L, E) of x's dtype, the position embeddings.

    Returns:
        (y, cache): y (N, L, E) of x's dtype; the TokensCache for `position_embedding_backward`.

    Raises:
        ValueError: x that is not (N, L, E) with the weight's L and E, or a weight that is not (1, L, E).
        TypeError: x of another backend or dtype than the weight.
    """
    check_input(weight, ndim=3, name="position_embedding's weight", sizes={0: 1})
    _, length, width = weight.shape
    check_input(x, ndim=3, name="position_embedding", sizes={1: length, 2: width}, like=weight)
    return x + weight, TokensCache(tuple(x.shape), x.dtype)


def position_embedding_backward(cache: TokensCache, grad_y):
    """The gradients of `position_embedding`.

    Args:
        cache: the TokensCache `position_embedding` returned.
        grad_y: dL/dy, (N, L, E) of x's dtype.

    Returns:
        (grad_x, grad_weight): dL/dx = dL/dy (N, L, E); dL/dP (1, L, E), dL/dy summed over the batch.
    """
    check_gradient(grad_y, cache.shape, cache.dtype, "position_embedding_backward")
    # y_nl = x_nl + P_l: dy_nl/dx_nl = 1, and P_l reaches every n: dL/dP_l = sum_n dL/dy_nl
    return grad_y, backend_of(grad_y).xp.sum(grad_y, axis=0, keepdims=True)


def class_token(x, token):
    """y = [c; x]: the learned class token c put in front of every sequence (ViT's [class]).

    Args:
        x: (N, L, E) tokens.
        token: c, (1, 1, E) of x's dtype.

    Returns:
        (y, cache): y (N, L + 1, E), y[:, 0] = c and y[:, 1:] = x; the TokensCache for
            `class_token_backward`.

    Raises:
        ValueError: x that is not (N, L, E) with the token's E, or a token that is not (1, 1, E).
        TypeError: x of another backend or dtype than the token.
    """
    check_input(token, ndim=3, name="class_token's token", sizes={0: 1, 1: 1})
    check_input(x, ndim=3, name="class_token", sizes={2: token.shape[2]}, like=token)
    xp = backend_of(x).xp
    batch, _, width = x.shape
    y = xp.concat([xp.broadcast_to(token, (batch, 1, width)), x], axis=1)
    return y, TokensCache(tuple(x.shape), x.dtype)


def class_token_backward(cache: TokensCache, grad_y):
    """The gradients of `class_token`.

    Args:
        cache: the TokensCache `class_token` returned.
        grad_y: dL/dy, (N, L + 1, E) of x's dtype.

    Returns:
        (grad_x, grad_token): dL/dx = dL/dy[:, 1:] (N, L, E); dL/dc (1, 1, E), dL/dy[:, 0] summed
            over the batch.
    """
    batch, length, width = cache.shape
    check_gradient(grad_y, (batch, length + 1, width), cache.dtype, "class_token_backward")
    # y_n0 = c for every n: dL/dc = sum_n dL/dy_n0; y_n,l+1 = x_nl: dL/dx_nl = dL/dy_n,l+1
    return grad_y[:, 1:, :], backend_of(grad_y).xp.sum(grad_y[:, :1, :], axis=0, keepdims=True)


def token_pool(x, mode="mean"):
    """One vector per sequence: the mean of its tokens ("mean"), or its first token ("first": the
    class token's output).

    Args:
        x: (N, L, E) tokens.
        mode: "mean" or "first".

    Returns:
        (y, cache): y (N, E) of x's dtype; the (TokensCache, mode) pair for `token_pool_backward`.

    Raises:
        ValueError: x that is not (N, L, E), or an unknown mode.
    """
    if mode not in POOLING_MODES:
        raise ValueError(f"token_pool's mode must be one of {', '.join(POOLING_MODES)}, got {mode!r}")
    check_input(x, ndim=3, name="token_pool")
    y = backend_of(x).xp.mean(x, axis=1) if mode == "mean" else x[:, 0, :]
    return y, (TokensCache(tuple(x.shape), x.dtype), mode)


def token_pool_backward(cache, grad_y):
    """The input gradient of `token_pool`.

    Args:
        cache: the pair `token_pool` returned.
        grad_y: dL/dy, (N, E) of x's dtype.

    Returns:
        grad_x: dL/dx (N, L, E): dL/dy / L at every position ("mean"), or dL/dy at the first and 0
            elsewhere ("first").
    """
    (shape, dtype), mode = cache
    batch, length, width = shape
    check_gradient(grad_y, (batch, width), dtype, "token_pool_backward")
    xp = backend_of(grad_y).xp
    if mode == "mean":  # y_n = (1/L) sum_l x_nl: dL/dx_nl = dL/dy_n / L
        return xp.zeros(shape, dtype=dtype, device=grad_y.device) + xp.reshape(grad_y / length, (batch, 1, width))
    # y_n = x_n0: the gradient goes to the first token, the others get none
    rest = xp.zeros((batch, length - 1, width), dtype=dtype, device=grad_y.device)
    return xp.concat([xp.reshape(grad_y, (batch, 1, width)), rest], axis=1)
