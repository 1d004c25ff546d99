"""Losses: `loss(prediction, target)` returns a 0-d array (kept on the device) and caches what
`backward()` needs to return d loss / d prediction. All are means over the batch."""

from backends import get_backend

from .checks import check_same_shape
from .layers.activations import sigmoid


class Loss:
    """Base class: `forward(prediction, target) -> 0-d array`, `backward() -> d loss / d prediction`."""

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
        return get_backend().xp.mean(self.difference * self.difference)

    def backward(self):
        # d/dp mean((p - t)^2) = 2 (p - t) / size
        return self.difference * (2 / self.difference.size)


class CrossEntropyLoss(Loss):
    """Softmax cross-entropy on logits, averaged over the batch, with a fused, stable backward.

    logits: (N, C) float; target: (N,) integer class labels or (N, C) class probabilities
    (one-hot or soft labels). The gradient is computed with the loss, in the same pass over
    the logits. A label outside [0, C) raises ValueError (on the GPU, where checking would cost a
    synchronisation per step, the loss becomes NaN instead, and Trainer.fit stops on it).
    """

    def forward(self, logits, target):
        backend = get_backend()
        xp = backend.xp
        if logits.ndim != 2:
            raise ValueError(f"CrossEntropyLoss expects logits (N, C), got shape {tuple(logits.shape)}")
        n = logits.shape[0]
        if target.ndim == 1 and xp.isdtype(target.dtype, "integral"):
            if target.shape[0] != n:
                raise ValueError(f"CrossEntropyLoss: {target.shape[0]} labels for {n} logits rows")
            value, self.grad = backend.softmax_cross_entropy(logits, target)
            return value
        if target.ndim == 2 and xp.isdtype(target.dtype, "real floating"):
            check_same_shape(logits, target, "CrossEntropyLoss")
            value, self.grad = backend.soft_cross_entropy(logits, target)
            return value
        raise ValueError(
            "CrossEntropyLoss expects integer labels (N,) or float probabilities (N, C), "
            f"got shape {tuple(target.shape)} of dtype {target.dtype}"
        )

    def backward(self):
        # d loss / d logits = (softmax(z) - t) / N
        return self.grad


class BCELoss(Loss):
    """Binary cross-entropy on probabilities p in (0, 1): -mean(t log p + (1 - t) log(1 - p)).

    p is clipped to [eps, 1 - eps] so that log never sees 0. Shapes must match.
    """

    def __init__(self, eps=1e-7):
        self.eps = eps

    def forward(self, p, target):
        check_same_shape(p, target, "BCELoss")
        xp = get_backend().xp
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
        xp = get_backend().xp
        self.z, self.target = z, target
        return xp.mean(xp.maximum(z, 0) - z * target + xp.log1p(xp.exp(-xp.abs(z))))

    def backward(self):
        # d/dz = (sigmoid(z) - t) / size
        return (sigmoid(self.z) - self.target) / self.z.size
