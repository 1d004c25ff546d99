"""Ready-made models used by the experiments, built from the public layers."""

from .init import as_generator
from .layers import BatchNorm2d, Conv2d, Dropout, Flatten, LeakyReLU, Linear, MaxPool2d, ReLU, Sequential, Sigmoid, Tanh

ACTIVATIONS = {"relu": ReLU, "leaky_relu": LeakyReLU, "tanh": Tanh, "sigmoid": Sigmoid}


def mlp(sizes, activation="relu", rng=None) -> Sequential:
    """Linear layers of `sizes` (input, hidden..., output) with `activation` between them;
    the output layer has none (logits). Kaiming init for ReLUs, Xavier for tanh/sigmoid."""
    if len(sizes) < 2:
        raise ValueError(f"an MLP needs at least input and output sizes, got {sizes}")
    if activation not in ACTIVATIONS:
        raise ValueError(f"unknown activation {activation!r}; valid: {', '.join(ACTIVATIONS)}")
    rng = as_generator(rng)
    init = "kaiming" if activation in ("relu", "leaky_relu") else "xavier"
    layers = []
    for index, (fan_in, fan_out) in enumerate(zip(sizes[:-1], sizes[1:])):
        layers.append(Linear(fan_in, fan_out, init=init, rng=rng))
        if index < len(sizes) - 2:
            layers.append(ACTIVATIONS[activation]())
    return Sequential(*layers)


def cnn(channels=(32, 64), hidden=128, dropout=0.5, batch_norm=False, classes=10, image_size=28, rng=None):
    """Two conv blocks (3x3 conv, [batch norm], 2x2 max-pool, ReLU) and a dense head with dropout.

    x: (N, 1, image_size, image_size) -> logits (N, classes). Pooling comes before the ReLU:
    max-pool and ReLU commute, and the ReLU then runs on a quarter of the values.
    """
    rng = as_generator(rng)
    layers, in_channels, size = [], 1, image_size
    for out_channels in channels:
        layers.append(Conv2d(in_channels, out_channels, 3, padding=1, bias=not batch_norm, rng=rng))
        if batch_norm:
            layers.append(BatchNorm2d(out_channels))
        layers += [MaxPool2d(2), ReLU()]
        in_channels, size = out_channels, size // 2
    layers += [
        Flatten(),
        Linear(in_channels * size * size, hidden, rng=rng),
        ReLU(),
        Dropout(dropout, rng=rng),
        Linear(hidden, classes, rng=rng),
    ]
    return Sequential(*layers)
