"""Batch normalisation (diynn/layers/normalisation.py, diynn/functional/normalisation.py)."""

import re

import numpy as np
import pytest

from diynn import (
    BatchNorm1d,
    BatchNorm2d,
    gradcheck,
)
from diynn import functional as F


@pytest.mark.parametrize("training", [True, False])
def test_batchnorm_gradients(backend, training, numpy_rng):
    for layer, shape in ((BatchNorm1d(3), (5, 3)), (BatchNorm1d(3), (4, 3, 2)), (BatchNorm2d(3), (4, 3, 2, 3))):
        layer.weight.data = backend.asarray(numpy_rng.normal(size=3).astype(np.float32))
        layer.train(training)
        if not training:
            layer.running_mean = backend.asarray(numpy_rng.normal(size=3).astype(np.float32))
            layer.running_var = backend.asarray(numpy_rng.uniform(0.5, 2, size=3).astype(np.float32))
        assert gradcheck(layer, numpy_rng.normal(size=shape), max_checks=60)


def test_batchnorm_running_statistics(backend, numpy_rng):
    layer = BatchNorm2d(2, momentum=0.5)
    x = numpy_rng.normal(loc=3.0, scale=2.0, size=(8, 2, 4, 4)).astype(np.float32)
    layer(backend.asarray(x))
    mean = x.mean(axis=(0, 2, 3))
    var = x.var(axis=(0, 2, 3), ddof=1)
    np.testing.assert_allclose(backend.to_numpy(layer.running_mean), 0.5 * mean, rtol=1e-5)
    np.testing.assert_allclose(backend.to_numpy(layer.running_var), 0.5 + 0.5 * var, rtol=1e-5)
    assert {"running_mean", "running_var", "weight", "bias"} == set(layer.state_dict())


@pytest.mark.parametrize(
    "change, error, message",
    [
        ({"x": np.ones((4, 5, 3), np.float32)}, ValueError, "batch_norm expects size 8 on axis 1, got shape (4, 5, 3)"),
        ({"x": np.ones(8, np.float32)}, ValueError, "batch_norm expects an input with 2 axes, got shape (8,)"),
        ({"x": np.ones((4, 8))}, TypeError, "batch_norm expects dtype float32"),
        ({"bias": np.zeros(5, np.float32)}, ValueError, "batch_norm's bias expects size 8 on axis 0, got shape (5,)"),
        ({"running_var": np.ones((8, 1), np.float32)}, ValueError, "batch_norm's running_var expects an input with 1"),
        ({"running_mean": np.zeros(8)}, TypeError, "batch_norm's running_mean expects dtype float32"),
    ],
)
@pytest.mark.parametrize("training", [True, False])
def test_functional_batch_norm_names_operands_that_do_not_fit(change, error, message, training):
    ones, zeros = np.ones(8, np.float32), np.zeros(8, np.float32)
    operands = {"x": np.ones((4, 8, 3), np.float32), "weight": ones, "bias": zeros, "running_mean": zeros.copy()}
    operands = {**operands, "running_var": ones.copy(), **change}
    with pytest.raises(error, match=re.escape(message)):
        F.batch_norm(*operands.values(), training=training)
