"""erf and exp of one float32 value in plain float32 arithmetic, for compiled kernels to call.

numba compiles `math.erf` and `math.exp` into calls of the C library, one value at a time: a loop
that calls them does not vectorise (a loop of erf and exp over 1.6 million float32 values: about
10x slower than these). These are polynomials, clamps and one bit pattern, which the compiler
vectorises; their error is a few float32 roundings (tests/backends/test_fast_math.py). Kernels
keep `math.erf` for float64, whose accuracy these lack.
"""

from __future__ import annotations

import math

import numpy as np

from .cpu_kernels import kernel

_f = np.float32
# Eigen's float32 erf (as XLA's): erf(x) = x P(x^2) / Q(x^2) on [-4, 4], highest power first; the
# approximation itself is within 6.5e-8 of erf there, and erf(4) rounds to 1 in float32
_ERF_P = tuple(
    _f(c)
    for c in (
        -2.72614225801306e-10,
        2.77068142495902e-08,
        -2.10102402082508e-06,
        -5.69250639462346e-05,
        -7.34990630326855e-04,
        -2.95459980854025e-03,
        -1.60960333262415e-02,
    )
)
_ERF_Q = tuple(
    _f(c)
    for c in (
        -1.45660718464996e-05,
        -2.13374055278905e-04,
        -1.68282697438203e-03,
        -7.37332916720468e-03,
        -1.42647390514189e-02,
    )
)
_ERF_LIMIT = _f(4.0)
# Cephes' expf: e^t = 2^k e^r, k = round(t / ln 2), r = t - k ln 2 in [-ln 2 / 2, ln 2 / 2] (ln 2
# split in two so that k ln 2 is exact), e^r = 1 + r + r^2 R(r)
_EXP_R = tuple(
    _f(c) for c in (1.9875691500e-4, 1.3981999507e-3, 8.3334519073e-3, 4.1665795894e-2, 1.6666665459e-1, 5.0e-1)
)
_LN2_HIGH, _LN2_LOW, _LOG2_E = _f(0.693359375), _f(-2.12194440e-4), _f(1.4426950408889634)
# e^t is a normal float32 for t in [-87, 88]: below, 0 (rather than a subnormal); above, infinity
_EXP_LOWEST, _EXP_HIGHEST = _f(-87.0), _f(88.0)
_ZERO, _ONE, _HALF_UP, _INFINITY = _f(0.0), _f(1.0), _f(128.5), _f(math.inf)


@kernel(contract=True)
def erf_float32(x):
    """erf(x) of one float32 value, in float32 (within 4e-7 of the C library's erf; NaN stays NaN).

    Args:
        x: a float32 scalar.

    Returns:
        erf(x), a float32 scalar: +-1 for |x| >= 4, where float32 rounds erf to 1.
    """
    a = _ERF_LIMIT if x > _ERF_LIMIT else -_ERF_LIMIT if x < -_ERF_LIMIT else x  # NaN stays NaN
    z = a * a
    p = _ERF_P[0]
    for c in _ERF_P[1:]:
        p = p * z + c
    q = _ERF_Q[0]
    for c in _ERF_Q[1:]:
        q = q * z + c
    return a * p / q


@kernel(contract=True)
def exp_float32(t):
    """e^t of one float32 value, in float32 (within one float32 ulp of e^t; NaN stays NaN).

    Args:
        t: a float32 scalar.

    Returns:
        e^t, a float32 scalar: 0 for t < -87 (no subnormals), infinity for t > 88.
    """
    c = t if t > _EXP_LOWEST else _EXP_LOWEST  # NaN -> the lowest: the conversion below sees a number
    c = c if c < _EXP_HIGHEST else _EXP_HIGHEST
    k = np.int32(c * _LOG2_E + _HALF_UP) - np.int32(128)  # round(c / ln 2): truncating a positive number
    n = _f(k)
    r = c - n * _LN2_HIGH - n * _LN2_LOW
    p = _EXP_R[0]
    for coefficient in _EXP_R[1:]:
        p = p * r + coefficient
    e = (p * r * r + r + _ONE) * np.int32((k + np.int32(127)) << 23).view(np.float32)  # 2^k: its exponent bits
    e = _ZERO if t < _EXP_LOWEST else _INFINITY if t > _EXP_HIGHEST else e
    return e if t == t else t
