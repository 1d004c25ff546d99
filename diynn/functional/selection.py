"""How an op chooses its implementation: one pattern for every op family.

A family (conv2d, max_pool2d, batch_norm, relu, the Adam update, ...) is a table of implementations
that share one signature. Each says, with `serves(*facts)`, whether it can compute a call, and the
family's selection function picks one from the same facts (backend, shapes, dtype, geometry,
settings), the fastest that serves:

    CONV2D = Family("conv2d", select_conv2d, {"cudnn": Implementation(...), ..., "channel_major": ...})
    implementation = CONV2D.choose(backend, x, weight, stride, ...)  # once per call
    y, cache = implementation.run(backend, x, weight, bias, ...)     # each returns its own cache type
    grads = CONV2D.backward_of(cache)(backend, cache, grad_y, ...)   # the backward follows the cache

Tests force an implementation, `with forced("conv2d", "channel_major"): ...`, and compare every one
that serves on this host with the portable reference. Forcing one that cannot compute the call is an
error naming why, never a silent fallback.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import NamedTuple

from ..backends import SMALLEST_PARALLEL_WORK


def always(*facts) -> bool:
    """The portable implementation's predicate: it computes every call."""
    return True


class Implementation(NamedTuple):
    """One way to compute an op: `run` (the family's signature: an op's forward, an optimiser's
    update), its `backward` (None where there is none), the `cache` type `run` returns (None where
    the cache is a plain array), and whether it `serves` a call (from the family's facts)."""

    run: Callable
    backward: Callable | None = None
    cache: type | None = None
    serves: Callable[..., bool] = always


class ImplementationUnavailable(ValueError):
    """A forced implementation that cannot compute the call it was forced on."""


FAMILIES: dict[str, Family] = {}
_forced: dict[str, str] = {}


class Family:
    """An op family: its implementations in a table and the function that selects one."""

    def __init__(self, name: str, select: Callable[..., str], implementations: dict[str, Implementation]):
        self.name, self.select, self.implementations = name, select, implementations
        self._by_cache = {i.cache: (key, i) for key, i in implementations.items() if i.cache is not None}
        FAMILIES[name] = self

    def choose(self, *facts) -> Implementation:
        """The implementation for a call: the forced one where a test forced one, else the selection."""
        name = _forced.get(self.name) if _forced else None
        if name is None:
            return self.implementations[self.select(*facts)]
        implementation = self.implementations[name]
        if not implementation.serves(*facts):
            raise ImplementationUnavailable(
                f"{self.name}: the implementation {name!r} was forced but cannot compute this call here; "
                f"those that can: {', '.join(self.serving(*facts))}"
            )
        return implementation

    def serving(self, *facts) -> list[str]:
        """The names of the implementations that can compute a call with these facts."""
        return [name for name, implementation in self.implementations.items() if implementation.serves(*facts)]

    def backward_of(self, cache) -> Callable:
        """The backward of the implementation that made `cache` (a TypeError for anything else)."""
        return self._made(cache)[1].backward

    def implementation_of(self, cache) -> str:
        """The name of the implementation that made `cache`."""
        return self._made(cache)[0]

    def _made(self, cache):
        made = self._by_cache.get(type(cache))
        if made is None:
            raise TypeError(f"{self.name}'s backward expects a cache made by {self.name}, got {type(cache).__name__}")
        return made


@contextlib.contextmanager
def forced(family: str, implementation: str):
    """Within the block, `family` runs `implementation` (ImplementationUnavailable for a call it
    cannot compute). Names are checked: a ValueError lists the valid ones."""
    if family not in FAMILIES:
        raise ValueError(f"unknown op family {family!r}; the families are: {', '.join(sorted(FAMILIES))}")
    names = FAMILIES[family].implementations
    if implementation not in names:
        raise ValueError(f"{family} has no implementation {implementation!r}; it has: {', '.join(names)}")
    previous = _forced.get(family)
    _forced[family] = implementation
    try:
        yield FAMILIES[family]
    finally:
        if previous is None:
            del _forced[family]
        else:
            _forced[family] = previous


def select_elementwise(backend, size: int) -> str:
    """The elementwise families' selection (activations, optimiser updates) from (backend, number of
    elements): a fused CUDA kernel where the backend compiles them, the compiled CPU loop where the
    kernels are compiled and the work pays for a parallel launch, else the portable array code."""
    if backend.fuses_kernels:
        return "fused"
    if backend.compiles_kernels and size >= SMALLEST_PARALLEL_WORK:
        return "compiled"
    return "portable"


def select_fused(backend, size: int) -> str:
    """For the families with no compiled CPU loop (their formulas run at memory speed in NumPy): a
    fused CUDA kernel where the backend compiles them, else the portable array code."""
    return "fused" if backend.fuses_kernels else "portable"


def fuses(backend, *facts) -> bool:
    """Whether the backend compiles fused elementwise CUDA kernels (CuPy)."""
    return backend.fuses_kernels


def compiles(backend, *facts) -> bool:
    """Whether the backend runs compiled CPU kernels (NumPy with the kernels setting "compiled")."""
    return backend.compiles_kernels
