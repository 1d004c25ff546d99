"""Losses: `loss(prediction, target)` returns a 0-d array (kept on the device) and caches what
`backward()` needs to return d loss / d prediction. All are means over the batch."""

from backends import Elementwise, backend_of

from . import arguments
from .checks import check_not_empty, check_same_shape
from .layers.activations import sigmoid


class Loss:
    """Base class: `forward(prediction, target) -> 0-d array`, `backward() -> d loss / d prediction`.
    `needs_target` is False for a loss computed from the predictions alone (NTXentLoss)."""

    needs_target = True

    def __call__(self, prediction, target):
        return self.forward(prediction, target)

    def forward(self, prediction, target):
        raise NotImplementedError

    def backward(self):
        raise NotImplementedError

    def config(self) -> dict:
        return {}


class MSELoss(Loss):
    """mean((prediction - target)^2) over all elements; both of the same shape."""

    def forward(self, prediction, target):
        check_same_shape(prediction, target, "MSELoss")
        self.difference = prediction - target
        return backend_of(prediction).xp.mean(self.difference * self.difference)

    def backward(self):
        # d/dp mean((p - t)^2) = 2 (p - t) / size
        return self.difference * (2 / self.difference.size)


class CrossEntropyLoss(Loss):
    """Softmax cross-entropy on logits, averaged over the batch, with a fused, stable backward.

    logits: (N, C) float; target: (N,) integer class labels or (N, C) class probabilities
    (one-hot or soft labels). The gradient is computed with the loss, in the same pass over
    the logits. A label outside [0, C) raises ValueError (on the GPU, where checking would cost a
    synchronisation per step, the loss becomes NaN instead, and Trainer.fit stops on it).
    `label_smoothing` = e mixes the target with the uniform distribution, t' = (1 - e) t + e / C
    (Szegedy et al. 2016; as in PyTorch).
    """

    def __init__(self, label_smoothing: float = 0.0):
        self.label_smoothing = arguments.real("label_smoothing", label_smoothing, low=0, high=1)

    def forward(self, logits, target):
        xp = backend_of(logits).xp
        if logits.ndim != 2:
            raise ValueError(f"CrossEntropyLoss expects logits (N, C), got shape {tuple(logits.shape)}")
        check_not_empty(logits, "CrossEntropyLoss")
        n, classes = logits.shape
        if target.ndim == 1 and xp.isdtype(target.dtype, "integral"):
            if target.shape[0] != n:
                raise ValueError(f"CrossEntropyLoss: {target.shape[0]} labels for {n} logits rows")
            if not self.label_smoothing:
                value, self.grad = softmax_cross_entropy(logits, target)
                return value
            target = one_hot(target, classes, logits.dtype)
        elif target.ndim == 2 and xp.isdtype(target.dtype, "real floating"):
            check_same_shape(logits, target, "CrossEntropyLoss")
        else:
            raise ValueError(
                "CrossEntropyLoss expects integer labels (N,) or float probabilities (N, C), "
                f"got shape {tuple(target.shape)} of dtype {target.dtype}"
            )
        if self.label_smoothing:
            target = (1 - self.label_smoothing) * target + self.label_smoothing / classes
        value, self.grad = soft_cross_entropy(logits, target)
        return value

    def backward(self):
        # d loss / d logits = (softmax(z) - t) / N
        return self.grad

    def config(self):
        return {"label_smoothing": self.label_smoothing}


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

    Returns (loss, grad) as `soft_cross_entropy` does for one-hot targets. Portable code: a label
    outside [0, C) raises ValueError (the check reads one number on the host). The fused kernel
    (CuPy) does it in one pass and returns NaN for such a label instead.
    """
    backend = backend_of(logits)
    xp = backend.xp
    n, classes = logits.shape
    fused = backend.elementwise(SOFTMAX_CROSS_ENTROPY)
    if fused is not None:
        losses = xp.empty((n,), dtype=logits.dtype, device=logits.device)
        grad = xp.empty_like(logits)
        fused(logits, labels, classes, 1.0 / n, losses, grad)
        return xp.mean(losses), grad
    return soft_cross_entropy(logits, one_hot(labels, classes, logits.dtype))


def one_hot(labels, classes: int, dtype):
    """Integer labels (N,) -> (N, classes) rows of `dtype` with a 1 at each label; a label outside
    [0, classes) raises ValueError (the check reads one number on the host)."""
    xp = backend_of(labels).xp
    rows = xp.astype(labels[:, None] == xp.arange(classes, device=labels.device), dtype)
    if float(xp.sum(rows)) != labels.shape[0]:  # a row without its label
        bad = labels[(labels < 0) | (labels >= classes)]
        raise ValueError(f"class labels must be in [0, {classes}) for {classes} logits, got {int(bad[0])}")
    return rows


class BCELoss(Loss):
    """Binary cross-entropy on probabilities p in (0, 1): -mean(t log p + (1 - t) log(1 - p)).

    p is clipped to [eps, 1 - eps] so that log never sees 0. Shapes must match.
    """

    def __init__(self, eps=1e-7):
        self.eps = eps

    def forward(self, p, target):
        check_same_shape(p, target, "BCELoss")
        xp = backend_of(p).xp
        self.p, self.target = xp.clip(p, self.eps, 1 - self.eps), target
        return -xp.mean(target * xp.log(self.p) + (1 - target) * xp.log(1 - self.p))

    def backward(self):
        # d/dp = (p - t) / (p (1 - p)) / size
        return (self.p - self.target) / (self.p * (1 - self.p) * self.p.size)

    def config(self):
        return {"eps": self.eps}


class BCEWithLogitsLoss(Loss):
    """Binary cross-entropy on logits z, fused with the sigmoid and stable for any |z|:
    mean(max(z, 0) - z t + log(1 + exp(-|z|))). Shapes must match."""

    def forward(self, z, target):
        check_same_shape(z, target, "BCEWithLogitsLoss")
        xp = backend_of(z).xp
        self.z, self.target = z, target
        return xp.mean(xp.maximum(z, 0) - z * target + xp.log1p(xp.exp(-xp.abs(z))))

    def backward(self):
        # d/dz = (sigmoid(z) - t) / size
        return (sigmoid(self.z) - self.target) / self.z.size


class PerceptualLoss(Loss):
    """Distance between the feature maps of a frozen network, plus an optional pixel term:

    L = pixel_weight mean((p - t)^2) + sum_k w_k mean((f_k(p) - f_k(t))^2),

    f_k the output of layer k of `network` (a Sequential, e.g. a trained classifier), `layers`
    {k: w_k}. The network is frozen (`freeze()`: eval mode, no parameter gradients) and
    `backward()` propagates through it to the prediction: d L / d p. prediction and target are
    the network's inputs, e.g. (N, 1, 28, 28) reconstructions and images.
    """

    def __init__(self, network, layers: dict, pixel_weight: float = 0.0):
        from .layers.containers import Sequential

        if not isinstance(network, Sequential):
            raise TypeError(f"PerceptualLoss needs a Sequential feature network, got {type(network).__name__}")
        if not isinstance(layers, dict) or not layers:
            raise ValueError("layers must be a non-empty {layer index: weight} dict")
        for index, weight in layers.items():
            if isinstance(index, bool) or not isinstance(index, int) or not 0 <= index < len(network):
                raise ValueError(f"layer index {index!r} is not in the network's 0..{len(network) - 1}")
            arguments.real(f"layers[{index}] (a weight)", weight, low=0)
        self.network = network.freeze()
        self.layers = dict(sorted(layers.items()))
        self.pixel_weight = arguments.real("pixel_weight", pixel_weight, low=0)

    def forward(self, prediction, target):
        check_same_shape(prediction, target, "PerceptualLoss")
        xp = backend_of(prediction).xp
        self.network.eval()
        deepest = max(self.layers)
        target_features = self._features(target, deepest)  # first, so the caches hold the prediction's pass
        features = self._features(prediction, deepest)
        self.differences = {k: features[k] - target_features[k] for k in self.layers}
        self.pixel_difference = prediction - target
        value = self.pixel_weight * xp.mean(self.pixel_difference * self.pixel_difference)
        for k, weight in self.layers.items():
            value = value + weight * xp.mean(self.differences[k] * self.differences[k])
        return value

    def backward(self):
        # d/df_k of w_k mean((f_k(p) - f_k(t))^2) = 2 w_k (f_k(p) - f_k(t)) / size_k, then back
        # through layers k..0 of the frozen network; the pixel term adds 2 w (p - t) / size
        grad = None
        for index in range(max(self.layers), -1, -1):
            if index in self.layers:
                difference = self.differences[index]
                term = difference * (2 * self.layers[index] / difference.size)
                grad = term if grad is None else grad + term
            grad = self.network[index].backward(grad)
        if self.pixel_weight:
            grad = grad + self.pixel_difference * (2 * self.pixel_weight / self.pixel_difference.size)
        return grad

    def _features(self, x, deepest):
        features = {}
        for index in range(deepest + 1):
            x = self.network[index].forward(x)
            if index in self.layers:
                features[index] = x
        return features


class NTXentLoss(Loss):
    """SimCLR's normalised-temperature cross-entropy (Chen et al. 2020) for two views of N images.

    z: (2N, D) projections, rows a and a + N the two views of one image (the positive pair).
    u = z / |z|, s = u u^T / temperature with the diagonal left out; the loss is the mean over the
    2N rows of -log softmax(s_a)[positive(a)]. No target: call it as loss(z, None).
    """

    needs_target = False

    def __init__(self, temperature: float = 0.5):
        self.temperature = arguments.real("temperature", temperature, low=0, low_open=True)

    def forward(self, z, target=None):
        xp = backend_of(z).xp
        if z.ndim != 2 or z.shape[0] % 2 or z.shape[0] < 4:
            raise ValueError(f"NTXentLoss expects (2N, D) projections of two views, N >= 2, got {tuple(z.shape)}")
        rows = z.shape[0]
        self.norm = xp.sqrt(xp.sum(z * z, axis=1, keepdims=True))
        self.u = z / self.norm
        logits = (self.u @ self.u.T) / self.temperature
        eye = xp.eye(rows, dtype=xp.bool, device=z.device)
        # the diagonal (a row with itself) drops out: a very negative, finite logit has softmax 0
        # (-inf would make 0 * inf = NaN in the cross-entropy's sum)
        excluded = xp.asarray(xp.finfo(z.dtype).min / 4, dtype=z.dtype, device=z.device)
        logits = xp.where(eye, excluded, logits)
        half = rows // 2
        positives = xp.concat([xp.arange(half, rows), xp.arange(0, half)])
        self.one_hot = xp.astype(positives[:, None] == xp.arange(rows)[None, :], z.dtype)
        value, self.grad_logits = soft_cross_entropy(logits, self.one_hot)
        return value

    def backward(self):
        # dL/ds = (softmax(s) - onehot) / 2N (diagonal 0); s = U U^T / tau gives
        # dL/dU = (G + G^T) U / tau; u = z / |z| gives dL/dz = (dL/du - u (u . dL/du)) / |z|
        g = self.grad_logits
        grad_u = ((g + g.T) @ self.u) / self.temperature
        radial = backend_of(g).xp.sum(grad_u * self.u, axis=1, keepdims=True)
        return (grad_u - self.u * radial) / self.norm

    def config(self):
        return {"temperature": self.temperature}
