"""Losses as functional pairs: `loss(prediction, target, ...) -> (value, cache)`, value a 0-d array
(a mean over the batch, kept on the device), and `loss_backward(cache, grad_value=1.0)` -> d loss /
d prediction scaled by grad_value."""

from __future__ import annotations

import math

from ..backends import Elementwise, backend_of, empty, kernel, parallel_range
from ..checks import check_not_empty, check_same_shape
from .activations import sigmoid
from .selection import Family, Implementation, compiles, fuses


def _scaled(grad, grad_value):
    return grad if grad_value == 1.0 else grad * grad_value


def mse_loss(prediction, target):
    """Mean squared error: mean((prediction - target)^2) over all elements.

    Args:
        prediction: p, any shape, floating point.
        target: t, of the prediction's shape (no broadcasting).

    Returns:
        (loss, cache): loss a 0-d array of the prediction's dtype; the cache for `mse_loss_backward`,
            the difference p - t.

    Raises:
        ValueError: the shapes differ, or the prediction is empty.
    """
    check_same_shape(prediction, target, "MSELoss")
    difference = prediction - target
    return backend_of(prediction).xp.mean(difference * difference), difference


def mse_loss_backward(difference, grad_value=1.0):
    """The gradient of `mse_loss` with respect to the prediction.

    Args:
        difference: the cache `mse_loss` returned, p - t.
        grad_value: dL/d(loss), the factor the gradient is scaled by (1.0: the loss's own gradient).

    Returns:
        grad: 2 (p - t) grad_value / size, of the prediction's shape and dtype.
    """
    # d/dp mean((p - t)^2) = 2 (p - t) / size
    return difference * (2 * grad_value / difference.size)


def cross_entropy(logits, target, label_smoothing=0.0):
    """Softmax cross-entropy on logits, averaged over the batch, with its gradient computed in the same pass.

    label_smoothing = e mixes the target with the uniform distribution, t' = (1 - e) t + e / C.
    Soft targets' rows must each sum to 1: the cached gradient (softmax(z) - t) / N is the loss's
    gradient only then (in general it is (sum_j t_j) softmax(z) - t, over N).

    Args:
        logits: z (N, C), floating point.
        target: (N,) integer labels in [0, C), or (N, C) class probabilities of a real floating dtype,
            each row summing to 1.
        label_smoothing: e in [0, 1].

    Returns:
        (loss, cache): loss a 0-d array of the logits' dtype; the cache for `cross_entropy_backward`,
            the gradient (softmax(z) - t) / N, (N, C).

    Raises:
        ValueError: logits that are not (N, C) or are empty, a target of another shape or dtype, or a
            label outside [0, C) (on CuPy the fused kernel gives a NaN loss instead: checking would
            cost a synchronisation).
    """
    xp = backend_of(logits).xp
    if logits.ndim != 2:
        raise ValueError(f"CrossEntropyLoss expects logits (N, C), got shape {tuple(logits.shape)}")
    check_not_empty(logits, "CrossEntropyLoss")
    n, classes = logits.shape
    if target.ndim == 1 and xp.isdtype(target.dtype, "integral"):
        if target.shape[0] != n:
            raise ValueError(f"CrossEntropyLoss: {target.shape[0]} labels for {n} logits rows")
        if not label_smoothing:
            return softmax_cross_entropy(logits, target)
        target = one_hot(target, classes, logits.dtype)
    elif target.ndim == 2 and xp.isdtype(target.dtype, "real floating"):
        check_same_shape(logits, target, "CrossEntropyLoss")
    else:
        raise ValueError(
            "CrossEntropyLoss expects integer labels (N,) or float probabilities (N, C), "
            f"got shape {tuple(target.shape)} of dtype {target.dtype}"
        )
    if label_smoothing:
        target = (1 - label_smoothing) * target + label_smoothing / classes
    return soft_cross_entropy(logits, target)


def cross_entropy_backward(grad, grad_value=1.0):
    """The gradient of `cross_entropy` with respect to the logits: the one computed with the loss.

    Args:
        grad: the cache `cross_entropy` returned, (softmax(z) - t) / N, (N, C).
        grad_value: dL/d(loss), the factor the gradient is scaled by (1.0: the loss's own gradient).

    Returns:
        grad_logits: (N, C), `grad` scaled by grad_value (the cached array itself for 1.0).
    """
    # d loss / d logits = (softmax(z) - t) / N, computed with the loss
    return _scaled(grad, grad_value)


def soft_cross_entropy(logits, target):
    """Mean softmax cross-entropy of logits (N, C) against class probabilities target (N, C).

    Returns (loss, grad): loss a 0-d array, mean over rows of -sum_j t_j log softmax(z)_j;
    grad (N, C) = (softmax(z) - t) / N.
    """
    xp = backend_of(logits).xp
    n = logits.shape[0]
    shifted = logits - xp.max(logits, axis=1, keepdims=True)  # log-sum-exp shift: no overflow
    p = xp.exp(shifted)
    total = xp.sum(p, axis=1, keepdims=True)
    p /= total
    loss = xp.sum(target * (xp.log(total) - shifted)) / n  # -log softmax(z) = log(total) - shifted
    p -= target
    p /= n
    return loss, p


# One thread per row of logits (N, C) with integer labels (N,): the row's loss
# log(sum exp z) - z[label] and its gradient (softmax(z) - onehot(label)) * scale, with one pass
# for the max, one for the sum and one for the gradient. A label outside [0, C) gives NaN.
SOFTMAX_CROSS_ENTROPY = Elementwise(
    "raw T logits, raw L labels, int64 classes, T scale",
    "T loss, raw T grad",
    """
    const long long row = i * classes;
    const long long label = labels[i];
    T top = logits[row];
    for (long long j = 1; j < classes; ++j) top = max(top, (T)logits[row + j]);
    T total = 0;
    for (long long j = 0; j < classes; ++j) total += exp(logits[row + j] - top);
    const bool valid = label >= 0 && label < classes;
    const T nan = T(0) / T(0);
    loss = valid ? log(total) + top - logits[row + label] : nan;
    for (long long j = 0; j < classes; ++j) {
        const T p = exp(logits[row + j] - top) / total;
        grad[row + j] = valid ? (p - (j == label ? T(1) : T(0))) * scale : nan;
    }
    """,
    "diynn_softmax_cross_entropy",
)


def softmax_cross_entropy(logits, labels):
    """Mean softmax cross-entropy of logits (N, C) against integer labels (N,), and its gradient.

    Returns (loss, grad) as `soft_cross_entropy` does for one-hot targets. On the CPU a label
    outside [0, C) raises ValueError; the fused kernel (CuPy) does it in one pass and returns NaN
    for such a label instead (checking would cost a synchronisation per step).
    """
    backend = backend_of(logits)
    return SOFTMAX_CROSS_ENTROPY_FAMILY.choose(backend, logits.size).run(backend, logits, labels)


def select_softmax_cross_entropy(backend, size: int) -> str:
    """The fused CUDA kernel on CuPy, the compiled rows where the CPU kernels are on (one call in
    place of a dozen array operations and a one-hot matrix: at any size), else the portable code."""
    if backend.fuses_kernels:
        return "fused"
    return "compiled" if backend.compiles_kernels else "portable"


def _softmax_cross_entropy_fused(backend, logits, labels):
    xp, (n, classes) = backend.xp, logits.shape
    losses = xp.empty((n,), dtype=logits.dtype, device=logits.device)
    grad = xp.empty_like(logits)
    backend.elementwise(SOFTMAX_CROSS_ENTROPY)(logits, labels, classes, 1.0 / n, losses, grad)
    return xp.mean(losses), grad


def _softmax_cross_entropy_compiled(backend, logits, labels):
    grad = empty(logits.shape, logits.dtype)
    total, bad_labels = backend.compiled(_softmax_cross_entropy_rows)(logits, labels, grad)
    if bad_labels:
        _raise_for_bad_labels(backend.xp, labels, logits.shape[1])
    return backend.asarray(total / logits.shape[0], dtype=logits.dtype), grad


@kernel
def _softmax_cross_entropy_rows(logits, labels, grad):
    """Per row n of logits (N, C): grad[n] = (softmax(z_n) - onehot(label_n)) / N (float64 sums).
    Returns (the sum over rows of log sum_j exp z_nj - z_n,label, the number of labels outside [0, C)
    (their rows are left unwritten))."""
    rows, classes = logits.shape
    total, bad_labels = 0.0, 0
    for n in parallel_range(rows):
        label = labels[n]
        if label < 0 or label >= classes:
            bad_labels += 1
            continue
        top = logits[n, 0]
        for j in range(1, classes):
            top = max(top, logits[n, j])
        norm = 0.0
        for j in range(classes):
            norm += math.exp(logits[n, j] - top)
        for j in range(classes):
            grad[n, j] = math.exp(logits[n, j] - top) / norm / rows
        grad[n, label] -= 1.0 / rows
        total += math.log(norm) + top - logits[n, label]
    return total, bad_labels


def _softmax_cross_entropy_portable(backend, logits, labels):
    return soft_cross_entropy(logits, one_hot(labels, logits.shape[1], logits.dtype))


SOFTMAX_CROSS_ENTROPY_FAMILY = Family(
    "softmax_cross_entropy",
    select_softmax_cross_entropy,
    {
        "fused": Implementation(_softmax_cross_entropy_fused, serves=fuses),
        "compiled": Implementation(_softmax_cross_entropy_compiled, serves=compiles),
        "portable": Implementation(_softmax_cross_entropy_portable),
    },
)


def one_hot(labels, classes: int, dtype):
    """Integer labels (N,) -> (N, classes) rows of `dtype` with a 1 at each label; a label outside
    [0, classes) raises ValueError (the check reads one number on the host)."""
    xp = backend_of(labels).xp
    rows = xp.astype(labels[:, None] == xp.arange(classes, device=labels.device), dtype)
    if float(xp.sum(rows)) != labels.shape[0]:  # a row without its label
        _raise_for_bad_labels(xp, labels, classes)
    return rows


def _raise_for_bad_labels(xp, labels, classes: int):
    bad = labels[(labels < 0) | (labels >= classes)]
    raise ValueError(f"class labels must be in [0, {classes}) for {classes} logits, got {int(bad[0])}")


def binary_cross_entropy(p, target, eps=1e-7):
    """Binary cross-entropy on probabilities: -mean(t log p + (1 - t) log(1 - p)).

    p is clipped to [eps, 1 - eps] so that log never sees 0.

    Args:
        p: probabilities in (0, 1), any shape, floating point.
        target: t in [0, 1], of p's shape (no broadcasting).
        eps: the clipping margin.

    Returns:
        (loss, cache): loss a 0-d array of p's dtype; the cache for `binary_cross_entropy_backward`,
            (the clipped p, t).

    Raises:
        ValueError: the shapes differ, or p is empty.
    """
    check_same_shape(p, target, "BCELoss")
    xp = backend_of(p).xp
    p = xp.clip(p, eps, 1 - eps)
    return -xp.mean(target * xp.log(p) + (1 - target) * xp.log(1 - p)), (p, target)


def binary_cross_entropy_backward(cache, grad_value=1.0):
    """The gradient of `binary_cross_entropy` with respect to p, evaluated at the clipped p.

    Where p was clipped, the gradient is the formula's value at eps or 1 - eps (not the 0 of the
    flat, clipped loss).

    Args:
        cache: the cache `binary_cross_entropy` returned, (the clipped p, t).
        grad_value: dL/d(loss), the factor the gradient is scaled by (1.0: the loss's own gradient).

    Returns:
        grad: (p - t) / (p (1 - p) size) grad_value, of p's shape and dtype.
    """
    # d/dp = (p - t) / (p (1 - p)) / size
    p, target = cache
    return (p - target) * grad_value / (p * (1 - p) * p.size)


def binary_cross_entropy_with_logits(z, target):
    """Binary cross-entropy on logits z, fused with the sigmoid and stable for any |z|.

    loss = mean(max(z, 0) - z t + log(1 + exp(-|z|))), which is
    -mean(t log sigmoid(z) + (1 - t) log(1 - sigmoid(z))).

    Args:
        z: logits, any shape, floating point.
        target: t in [0, 1], of z's shape (no broadcasting).

    Returns:
        (loss, cache): loss a 0-d array of z's dtype; the cache for
            `binary_cross_entropy_with_logits_backward`, (z, t).

    Raises:
        ValueError: the shapes differ, or z is empty.
    """
    check_same_shape(z, target, "BCEWithLogitsLoss")
    xp = backend_of(z).xp
    return xp.mean(xp.maximum(z, 0) - z * target + xp.log1p(xp.exp(-xp.abs(z)))), (z, target)


def binary_cross_entropy_with_logits_backward(cache, grad_value=1.0):
    """The gradient of `binary_cross_entropy_with_logits` with respect to the logits.

    Args:
        cache: the cache `binary_cross_entropy_with_logits` returned, (z, t).
        grad_value: dL/d(loss), the factor the gradient is scaled by (1.0: the loss's own gradient).

    Returns:
        grad: (sigmoid(z) - t) grad_value / size, of z's shape and dtype.
    """
    # d/dz = (sigmoid(z) - t) / size
    z, target = cache
    return (sigmoid(z)[0] - target) * (grad_value / z.size)


def nt_xent(z, temperature=0.5):
    """SimCLR's normalised-temperature cross-entropy (Chen et al. 2020) for two views of N images.

    u = z / |z|, s = u u^T / temperature with the diagonal left out; the loss is the mean over the
    2N rows of -log softmax(s_a)[positive(a)].

    Args:
        z: (2N, D) projections, N >= 2, rows a and a + N the two views of one image (the positive
            pair), floating point.
        temperature: tau > 0.

    Returns:
        (loss, cache): loss a 0-d array of z's dtype; the cache for `nt_xent_backward`,
            (dL/ds, u, |z|, temperature).

    Raises:
        ValueError: z is not (2N, D) with N >= 2.
    """
    xp = backend_of(z).xp
    if z.ndim != 2 or z.shape[0] % 2 or z.shape[0] < 4:
        raise ValueError(f"NTXentLoss expects (2N, D) projections of two views, N >= 2, got {tuple(z.shape)}")
    rows = z.shape[0]
    norm = xp.sqrt(xp.sum(z * z, axis=1, keepdims=True))
    u = z / norm
    logits = (u @ u.T) / temperature
    eye = xp.eye(rows, dtype=xp.bool, device=z.device)
    # the diagonal (a row with itself) drops out: a very negative, finite logit has softmax 0
    # (-inf would make 0 * inf = NaN in the cross-entropy's sum)
    excluded = xp.asarray(xp.finfo(z.dtype).min / 4, dtype=z.dtype, device=z.device)
    logits = xp.where(eye, excluded, logits)
    half = rows // 2
    positives = xp.concat([xp.arange(half, rows), xp.arange(0, half)])
    targets = xp.astype(positives[:, None] == xp.arange(rows)[None, :], z.dtype)
    value, grad_logits = soft_cross_entropy(logits, targets)
    return value, (grad_logits, u, norm, temperature)


def nt_xent_backward(cache, grad_value=1.0):
    """The gradient of `nt_xent` with respect to the projections z.

    Args:
        cache: the cache `nt_xent` returned.
        grad_value: dL/d(loss), the factor the gradient is scaled by (1.0: the loss's own gradient).

    Returns:
        grad_z: (2N, D), of z's dtype.
    """
    # dL/ds = (softmax(s) - onehot) / 2N (diagonal 0); s = U U^T / tau gives
    # dL/dU = (G + G^T) U / tau; u = z / |z| gives dL/dz = (dL/du - u (u . dL/du)) / |z|
    g, u, norm, temperature = cache
    grad_u = ((g + g.T) @ u) * (grad_value / temperature)
    radial = backend_of(g).xp.sum(grad_u * u, axis=1, keepdims=True)
    return (grad_u - u * radial) / norm
