"""The embedding lookup as a functional pair: a gather of weight rows, whose backward adds the
output's gradient back into the rows it came from (`Backend.index_add`: repeated indices add up)."""

from __future__ import annotations

from typing import NamedTuple

from ..backends import backend_of
from ..checks import check_gradient, check_input, check_same_backend


class EmbeddingCache(NamedTuple):
    """What the backward needs: the indices flattened (M,), the weight's shape (V, D), its dtype, the
    padding row (None for none) and the indices' shape."""

    indices: object
    weight_shape: tuple
    dtype: object
    padding_idx: int | None
    shape: tuple


def embedding(indices, weight, padding_idx=None):
    """y[..., :] = weight[indices[...], :]: the row of each index (PyTorch's embedding).

    Args:
        indices: integers in [0, V), any shape (N, ...).
        weight: (V, D) floating point, one row per index.
        padding_idx: an index whose row gets no gradient (negative: counted from V), or None.

    Returns:
        (y, cache): y (N, ..., D) of the weight's dtype; the cache for `embedding_backward`.

    Raises:
        TypeError: indices that are not an integer array, or on another backend than the weight.
        ValueError: an index outside [0, V), a padding_idx outside [-V, V), a weight that is not 2-D.
    """
    check_input(weight, ndim=2, name="embedding's weight")
    rows = weight.shape[0]
    padding_idx = _padding_row(padding_idx, rows)
    backend = backend_of(weight)
    xp = backend.xp
    if not hasattr(indices, "dtype") or not xp.isdtype(indices.dtype, "integral"):
        given = getattr(indices, "dtype", type(indices).__name__)
        raise TypeError(f"embedding expects integer indices, got {given}")
    check_same_backend(indices, weight, "embedding")
    flat = xp.reshape(indices, (-1,))
    if flat.shape[0] and bool(xp.any((flat < 0) | (flat >= rows))):  # one transfer to the host per call
        low, high = int(xp.min(flat)), int(xp.max(flat))
        bad = low if low < 0 else high
        raise ValueError(f"embedding's indices must be in [0, {rows}) for {rows} rows, got {bad}")
    y = xp.reshape(xp.take(weight, flat, axis=0), (*indices.shape, weight.shape[1]))
    return y, EmbeddingCache(flat, tuple(weight.shape), weight.dtype, padding_idx, tuple(indices.shape))


def embedding_backward(cache, grad_y):
    """The gradient of `embedding` with respect to its weight (the indices have none).

    Args:
        cache: the cache `embedding` returned.
        grad_y: dL/dy, (N, ..., D) of the weight's dtype.

    Returns:
        grad_weight: dL/dweight (V, D): row v sums dL/dy over the positions whose index is v (zero for
            an index that does not occur, and for padding_idx).
    """
    # y_m = W[i_m]: dL/dW_v = sum over m with i_m = v of dL/dy_m
    if not isinstance(cache, EmbeddingCache):
        raise TypeError(f"embedding_backward expects a cache made by embedding, got {type(cache).__name__}")
    indices, (rows, width), dtype, padding_idx, shape = cache
    check_gradient(grad_y, (*shape, width), dtype, "embedding_backward")
    backend = backend_of(grad_y)
    xp = backend.xp
    grad_weight = xp.zeros((rows, width), dtype=dtype, device=grad_y.device)
    backend.index_add(grad_weight, indices, xp.reshape(grad_y, (-1, width)))
    if padding_idx is not None:
        grad_weight[padding_idx, :] = 0
    return grad_weight


def _padding_row(padding_idx, rows: int) -> int | None:
    """padding_idx as a row in [0, rows) (a negative one counted from the end), or None."""
    if padding_idx is None:
        return None
    if isinstance(padding_idx, bool) or not isinstance(padding_idx, int):
        raise TypeError(f"embedding's padding_idx must be an integer or None, got {padding_idx!r}")
    if not -rows <= padding_idx < rows:
        raise ValueError(f"embedding's padding_idx must be in [-{rows}, {rows}) for {rows} rows, got {padding_idx}")
    return padding_idx % rows
