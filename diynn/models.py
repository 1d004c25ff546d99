"""Ready-made models used by the experiments, built from the public layers."""

from .init import as_generator
from .layers import LeakyReLU, Linear, ReLU, Sequential, Sigmoid, Tanh

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
