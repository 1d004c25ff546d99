"""backends/fast_math.py: the float32 erf and exp that compiled kernels call, against the C
library's in float64, over float32's whole range: tails, limits, zeros, NaN and infinities."""

import math

import numpy as np
import pytest

from diynn import backends
from diynn.backends import erf_float32, exp_float32, kernel, parallel_range


@pytest.fixture(autouse=True)
def compiled_kernels():
    before = backends.kernels()
    backends.set_kernels("compiled")
    yield backends.get("numpy")
    backends.set_kernels(before)


@kernel
def _erf_flat(x1, y1):
    for i in parallel_range(x1.shape[0]):
        y1[i] = erf_float32(x1[i])


@kernel
def _exp_flat(x1, y1):
    for i in parallel_range(x1.shape[0]):
        y1[i] = exp_float32(x1[i])


def run(numpy, loop, x):
    y = np.empty_like(x)
    numpy.compiled(loop)(x, y)
    assert y.dtype == np.float32
    return y


def test_erf_is_within_4e_7_of_the_c_library(compiled_kernels):
    magnitudes = np.geomspace(1e-38, 3e38, 2001)
    x = np.concatenate([np.linspace(-6, 6, 240001), magnitudes, -magnitudes, [0.0, -0.0]]).astype(np.float32)
    expected = np.array([math.erf(value) for value in x.astype(np.float64)])
    error = np.abs(run(compiled_kernels, _erf_flat, x) - expected)
    assert error.max() < 4e-7  # the C library's erf rounded to float32: 6e-8


def test_erf_limits_and_nan(compiled_kernels):
    x = np.array([4.0, 9.0, 3e38, np.inf, -4.0, -np.inf, np.nan, -0.0], np.float32)
    y = run(compiled_kernels, _erf_flat, x)
    np.testing.assert_array_equal(y[:6], [1, 1, 1, 1, -1, -1])
    assert np.isnan(y[6]) and y[7] == 0


def test_exp_is_within_one_float32_ulp(compiled_kernels):
    t = np.concatenate([np.linspace(-87, 88, 350001), np.geomspace(1e-38, 1, 500), -np.geomspace(1e-38, 1, 500)])
    t = t.astype(np.float32)
    expected = np.exp(t.astype(np.float64))
    error = np.abs(run(compiled_kernels, _exp_flat, t) - expected) / expected
    assert error.max() < 1.2e-7  # 2 ** -23, one float32 ulp (8.3e-8 measured)


def test_exp_limits_and_nan(compiled_kernels):
    t = np.array([-87.5, -1e30, -np.inf, 88.5, 1e30, np.inf, 0.0, np.nan], np.float32)
    y = run(compiled_kernels, _exp_flat, t)
    np.testing.assert_array_equal(y[:7], [0, 0, 0, np.inf, np.inf, np.inf, 1])
    assert np.isnan(y[7])
