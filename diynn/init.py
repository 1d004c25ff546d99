"""Weight initialisation: Xavier/Glorot and Kaiming/He, drawn from a seeded backend generator."""

import math

from .backends import Generator, backend_of, get_backend

INITS = ("kaiming", "xavier")


def as_generator(rng) -> Generator:
    """`rng` as a backend Generator: an int seed, None (unseeded) or a Generator itself."""
    if isinstance(rng, Generator):
        return rng
    return get_backend().rng(rng)


def following(rng: Generator, x) -> Generator:
    """`rng`, or (when array `x` lives on another backend) its continuation drawing onto x's."""
    backend = backend_of(x)
    return rng if rng.backend is backend else rng.to(backend)


def initial_weight(shape, fan_in: int, fan_out: int, init: str, rng: Generator, dtype):
    """A weight array of `shape`.

    kaiming: N(0, 2 / fan_in), keeps the activations' variance through ReLUs (He et al. 2015).
    xavier: U(-a, a), a = sqrt(6 / (fan_in + fan_out)), for tanh and sigmoid (Glorot 2010).
    """
    if init == "kaiming":
        return rng.normal(shape, std=math.sqrt(2.0 / fan_in), dtype=dtype)
    if init == "xavier":
        limit = math.sqrt(6.0 / (fan_in + fan_out))
        return rng.uniform(-limit, limit, shape, dtype=dtype)
    raise ValueError(f"unknown init {init!r}; valid names are: {', '.join(INITS)}")
