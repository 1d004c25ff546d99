"""Autoencoders: an encoder and a decoder trained to reproduce their input."""

from __future__ import annotations

from . import arguments
from .backends import backend_of
from .init import as_generator, following
from .module import Module


class Autoencoder(Module):
    """x -> encoder -> z -> decoder -> reconstruction of x.

    `encode(x)` and `decode(z)` use the two parts alone.

    Args:
        encoder: any Module (usually a Sequential).
        decoder: any Module (usually a Sequential).
        noise_std: > 0 makes it a denoising autoencoder: in training mode only, Gaussian noise of
            that standard deviation is added to the input (the target stays the clean image).
        rng: seed or Generator for the noise.

    Raises:
        TypeError: an encoder or decoder that is not a Module.
    """

    def __init__(self, encoder: Module, decoder: Module, noise_std: float = 0.0, rng=None):
        super().__init__()
        for name, part in (("encoder", encoder), ("decoder", decoder)):
            if not isinstance(part, Module):
                raise TypeError(f"Autoencoder's {name} must be a Module, got {type(part).__name__}")
        self.encoder, self.decoder = encoder, decoder
        self.noise_std = arguments.real("noise_std", noise_std, low=0)
        self.rng = as_generator(rng)

    def forward(self, x):
        if self.training and self.noise_std > 0:
            self.rng = following(self.rng, x)
            x = x + self.rng.normal(tuple(x.shape), std=self.noise_std, dtype=x.dtype)
        return self.decoder(self.encoder(x))

    def backward(self, grad_output, input_grad=True):
        return self.encoder.run_backward(self.decoder.run_backward(grad_output), input_grad)

    def encode(self, x):
        """Latent codes of x (no noise).

        Args:
            x: an input the encoder takes, e.g. (N, 784).

        Returns:
            z: the encoder's output, e.g. (N, latent).
        """
        return self.encoder.forward(x)

    def decode(self, z):
        """Reconstructions from latent codes z (the decoder alone).

        Args:
            z: codes the decoder takes, e.g. (N, latent).

        Returns:
            reconstruction: the decoder's output, e.g. (N, 784).
        """
        return self.decoder.forward(z)

    def config(self):
        return {"encoder": self.encoder, "decoder": self.decoder, "noise_std": self.noise_std}


def add_noise(x, std: float, rng=None, clip: bool = True):
    """x + N(0, std^2) per element, clipped to [0, 1] when `clip` (images).

    Args:
        x: an array of any shape, floating point.
        std: the noise's standard deviation.
        rng: seed or Generator for the noise.
        clip: clip the result to [0, 1].

    Returns:
        noisy: an array of x's shape and dtype.
    """
    xp = backend_of(x).xp
    noisy = x + following(as_generator(rng), x).normal(tuple(x.shape), std=std, dtype=x.dtype)
    return xp.clip(noisy, 0.0, 1.0) if clip else noisy
