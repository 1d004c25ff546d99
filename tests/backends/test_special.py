"""What the backends add to the array API standard for the transformer's layers: `Backend.erf` (the
rational approximations of backends/special.py where the library has none) and `Backend.index_add`
(a scatter-add where repeated indices add up), on every backend."""

import math

import numpy as np
import pytest

from diynn.backends import special


def test_erf_is_within_a_few_ulps_of_the_c_library(backend):
    x = np.concatenate([np.linspace(-7, 7, 20001), np.geomspace(1e-300, 1, 300), -np.geomspace(1e-300, 1, 300)])
    expected = np.array([math.erf(value) for value in x])
    result = backend.to_numpy(backend.erf(backend.asarray(x)))
    ulps = np.abs(result - expected) / np.spacing(np.abs(expected))
    assert result.dtype == np.float64 and ulps.max() <= 4


def test_erf_keeps_float32_and_its_limits(backend):
    x = np.array([-np.inf, -1e30, -6.5, -1.0, 0.0, 0.5, 3.0, 1e30, np.inf], np.float32)
    result = backend.to_numpy(backend.erf(backend.asarray(x)))
    assert result.dtype == np.float32
    np.testing.assert_allclose(result, [math.erf(value) for value in x.astype(np.float64)], rtol=2e-7, atol=1e-7)
    assert np.isnan(backend.to_numpy(backend.erf(backend.asarray(np.array([np.nan])))))[0]


def test_the_portable_erf_runs_on_any_namespace():
    import array_api_strict as xp

    result = special.erf(xp, xp.asarray([[0.25, -2.0], [9.0, -0.0]]))
    expected = [[math.erf(0.25), math.erf(-2.0)], [1.0, 0.0]]
    np.testing.assert_allclose(np.asarray(result), expected, rtol=1e-15, atol=0)


def _index_add_case():
    rng = np.random.default_rng(0)
    indices = np.array([2, 0, 2, 2, 5, 0, 1])
    values, target = rng.standard_normal((7, 3, 2)), rng.standard_normal((6, 3, 2))
    expected = target.copy()
    np.add.at(expected, indices, values)
    return indices, values, target, expected


def test_index_add_adds_up_repeated_indices(backend):
    indices, values, target, expected = _index_add_case()
    array = backend.asarray(target)
    backend.index_add(array, backend.asarray(indices), backend.asarray(values))
    np.testing.assert_allclose(backend.to_numpy(array), expected, rtol=1e-14)


@pytest.mark.parametrize("block", [2**22, 12])  # one one-hot block; blocks of 2 indices (12 // 6 rows)
def test_the_portable_index_add_in_blocks(monkeypatch, block):
    from diynn import backends

    monkeypatch.setattr(backends.base, "ONE_HOT_BLOCK", block)
    strict = backends.get("array_api_strict")
    indices, values, target, expected = _index_add_case()
    array = strict.asarray(target)
    backends.Backend.index_add(strict, array, strict.asarray(indices), strict.asarray(values))
    np.testing.assert_allclose(strict.to_numpy(array), expected, rtol=1e-14)
