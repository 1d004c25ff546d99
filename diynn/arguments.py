"""Checks of constructor and call arguments where they enter the library: each failure is a
TypeError (wrong kind of value) or ValueError (out of range) naming the argument, the value given
and what is allowed."""

from __future__ import annotations

import math
import numbers


def integer(name: str, value, minimum: int = 1) -> int:
    """`value` as an int >= `minimum` (bools and floats such as 2.0 are refused)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an integer >= {minimum}, got {value!r} ({type(value).__name__})")
    if value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value}")
    return int(value)


def integer_pair(name: str, value, minimum: int = 1) -> tuple[int, int]:
    """An int or a pair of ints (height, width), each >= `minimum`, as a pair."""
    if isinstance(value, (list, tuple)):
        if len(value) != 2:
            raise ValueError(f"{name} must be an integer or a pair of integers, got {value!r}")
        return integer(name, value[0], minimum), integer(name, value[1], minimum)
    value = integer(name, value, minimum)
    return value, value


def real(name: str, value, *, low=-math.inf, high=math.inf, low_open=False, high_open=False) -> float:
    """`value` as a finite float in the interval given (open ends where said)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a real number, got {value!r} ({type(value).__name__})")
    value = float(value)
    below = value <= low if low_open else value < low
    above = value >= high if high_open else value > high
    if not math.isfinite(value) or below or above:
        interval = f"{'(' if low_open else '['}{low}, {high}{')' if high_open else ']'}"
        raise ValueError(f"{name} must be a finite number in {interval}, got {value}")
    return value


def choice(name: str, value, allowed) -> str:
    """`value` if it is one of `allowed`."""
    if value not in allowed:
        raise ValueError(f"unknown {name} {value!r}; valid names are: {', '.join(map(str, allowed))}")
    return value
