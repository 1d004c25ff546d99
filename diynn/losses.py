"""Losses: `loss(prediction, target)` returns a 0-d array (kept on the device) and keeps what
`backward()` needs to return d loss / d prediction. All are means over the batch; each is a thin
class over its pair in `diynn.functional.losses` (PerceptualLoss composes a network)."""

from . import arguments
from . import functional as F
from .backends import backend_of
from .checks import check_same_shape
from .grad_mode import PendingCaches, enable_grad, keeps_cache, no_grad


class Loss(PendingCaches):
    """Base class: `forward(prediction, target) -> 0-d array`, `backward() -> d loss / d prediction`.

    A subclass names its functional pair (`op`, `op_backward`) and the options it passes
    (`config()`). `needs_target` is False for a loss computed from the predictions alone (NTXentLoss).
    Unlike PyTorch there is no autograd: `backward()` returns the gradient with respect to the
    prediction, which the caller hands to `model.backward`.
    """

    needs_target = True

    def __call__(self, prediction, target):
        return self.forward(prediction, target)

    def forward(self, prediction, target):
        """The loss of `prediction` against `target`, keeping what `backward` needs.

        Args:
            prediction: the model's output.
            target: what it should have been (the subclass says which shapes and dtypes).

        Returns:
            loss: a 0-d array of the prediction's dtype, on its device (a mean over the batch).
        """
        value, cache = self.op(prediction, target, **self.config())
        self.save_for_backward(cache)
        return value

    def backward(self):
        """d loss / d prediction at the latest kept forward (each backward consumes one).

        Returns:
            grad: d loss / d prediction, of the prediction's shape and dtype.

        Raises:
            RuntimeError: no forward is waiting for its backward (none ran, or its cache was not
                kept: under `diynn.no_grad()`).
        """
        return self.op_backward(self.saved_for_backward())

    def config(self) -> dict:
        """The options passed to `op` besides prediction and target, by name."""
        return {}


class MSELoss(Loss):
    """Mean squared error: mean((prediction - target)^2) over all elements.

    Shapes: prediction and target of one shape (no broadcasting), floating point.
    """

    op, op_backward = staticmethod(F.mse_loss), staticmethod(F.mse_loss_backward)


class CrossEntropyLoss(Loss):
    """Softmax cross-entropy on logits, averaged over the batch, with a fused, stable backward.

    The gradient is computed with the loss, in the same pass over the logits. A label outside
    [0, C) raises ValueError (on the GPU, where checking would cost a synchronisation per step, the
    loss becomes NaN instead, and Trainer.fit stops on it).

    Shapes: logits (N, C) float; target (N,) integer class labels, or (N, C) class probabilities
    (one-hot or soft labels), each row summing to 1.

    Args:
        label_smoothing: e in [0, 1]: mixes the target with the uniform distribution,
            t' = (1 - e) t + e / C (Szegedy et al. 2016; as in PyTorch).
    """

    op, op_backward = staticmethod(F.cross_entropy), staticmethod(F.cross_entropy_backward)

    def __init__(self, label_smoothing: float = 0.0):
        self.label_smoothing = arguments.real("label_smoothing", label_smoothing, low=0, high=1)

    def config(self):
        return {"label_smoothing": self.label_smoothing}


class BCELoss(Loss):
    """Binary cross-entropy on probabilities p in (0, 1): -mean(t log p + (1 - t) log(1 - p)).

    p is clipped to [eps, 1 - eps] so that log never sees 0 (the gradient is that at the clipped p).

    Shapes: p and t of one shape (no broadcasting), floating point; t in [0, 1].

    Args:
        eps: the clipping margin.
    """

    op, op_backward = staticmethod(F.binary_cross_entropy), staticmethod(F.binary_cross_entropy_backward)

    def __init__(self, eps=1e-7):
        self.eps = eps

    def config(self):
        return {"eps": self.eps}


class BCEWithLogitsLoss(Loss):
    """Binary cross-entropy on logits z, fused with the sigmoid and stable for any |z|.

    loss = mean(max(z, 0) - z t + log(1 + exp(-|z|))), which is -mean(t log sigmoid(z) +
    (1 - t) log(1 - sigmoid(z))).

    Shapes: z and t of one shape (no broadcasting), floating point; t in [0, 1].
    """

    op = staticmethod(F.binary_cross_entropy_with_logits)
    op_backward = staticmethod(F.binary_cross_entropy_with_logits_backward)


class PerceptualLoss(Loss):
    """Distance between the feature maps of a frozen network, plus an optional pixel term.

    L = pixel_weight mean((p - t)^2) + sum_k w_k mean((f_k(p) - f_k(t))^2), f_k the output of layer
    k of `network`. The network is frozen (`freeze()`: eval mode, no parameter gradients) and
    `backward()` propagates through it to the prediction: d L / d p.

    Shapes: prediction and target of one shape, the network's inputs, e.g. (N, 1, 28, 28)
    reconstructions and images.

    Args:
        network: a Sequential, e.g. a trained classifier; frozen in place.
        layers: {k: w_k}, the weight w_k >= 0 of layer k's features (k a layer index of `network`).
        pixel_weight: the weight of the pixel term, >= 0.

    Raises:
        TypeError: a network that is not a Sequential.
        ValueError: an empty `layers`, a layer index outside the network, or a negative weight.
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
        with no_grad():  # the target's features need no backward
            target_features = self._features(target, deepest)
        # the frozen, eval-mode network keeps the prediction's caches when this loss keeps its own
        with enable_grad() if keeps_cache(training=True) else no_grad():
            features = self._features(prediction, deepest)
        differences = {k: features[k] - target_features[k] for k in self.layers}
        pixel_difference = prediction - target
        value = self.pixel_weight * xp.mean(pixel_difference * pixel_difference)
        for k, weight in self.layers.items():
            value = value + weight * xp.mean(differences[k] * differences[k])
        self.save_for_backward((differences, pixel_difference))
        return value

    def backward(self):
        # d/df_k of w_k mean((f_k(p) - f_k(t))^2) = 2 w_k (f_k(p) - f_k(t)) / size_k, then back
        # through layers k..0 of the frozen network; the pixel term adds 2 w (p - t) / size
        differences, pixel_difference = self.saved_for_backward()
        grad = None
        for index in range(max(self.layers), -1, -1):
            if index in self.layers:
                difference = differences[index]
                term = difference * (2 * self.layers[index] / difference.size)
                grad = term if grad is None else grad + term
            grad = self.network[index].backward(grad)
        if self.pixel_weight:
            grad = grad + pixel_difference * (2 * self.pixel_weight / pixel_difference.size)
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

    u = z / |z|, s = u u^T / temperature with the diagonal left out; the loss is the mean over the
    2N rows of -log softmax(s_a)[positive(a)]. No target: call it as loss(z, None).

    Shapes: z (2N, D) projections, N >= 2, rows a and a + N the two views of one image (the
    positive pair).

    Args:
        temperature: tau > 0.
    """

    needs_target = False

    def __init__(self, temperature: float = 0.5):
        self.temperature = arguments.real("temperature", temperature, low=0, low_open=True)

    def forward(self, z, target=None):
        value, cache = F.nt_xent(z, self.temperature)
        self.save_for_backward(cache)
        return value

    def backward(self):
        return F.nt_xent_backward(self.saved_for_backward())

    def config(self):
        return {"temperature": self.temperature}
