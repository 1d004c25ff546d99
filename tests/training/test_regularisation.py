"""Gradient clipping and L1/L2 penalties (diynn/training/regularisation.py)."""

import numpy as np
import pytest

import diynn
from diynn import L1L2, Parameter, clip_grad_norm


def test_clip_grad_norm_bounds_the_global_norm(backend, numpy_rng):
    grads = [numpy_rng.normal(size=(3, 4)), numpy_rng.normal(size=5)]
    params = [Parameter(backend.asarray(np.zeros_like(g))) for g in grads]
    for p, g in zip(params, grads):
        p.grad = backend.asarray(g.copy())
    norm = float(clip_grad_norm(params, 1.0))
    assert norm == pytest.approx(np.sqrt(sum((g**2).sum() for g in grads)))
    clipped = np.sqrt(sum((backend.to_numpy(p.grad) ** 2).sum() for p in params))
    assert clipped == pytest.approx(1.0, rel=1e-5)
    np.testing.assert_allclose(backend.to_numpy(params[0].grad), grads[0] / norm, rtol=1e-5)
    float(clip_grad_norm(params, 10.0))  # below the bound: unchanged
    assert np.sqrt(sum((backend.to_numpy(p.grad) ** 2).sum() for p in params)) == pytest.approx(1.0, rel=1e-5)


def test_l1_l2_penalty_value_and_gradient(backend, numpy_rng):
    w = numpy_rng.normal(size=(3, 4))
    weight, bias = Parameter(backend.asarray(w.copy())), Parameter(backend.asarray(np.ones(4)))
    penalty = float(L1L2(l1=0.1, l2=0.2).apply([weight, bias]))
    assert penalty == pytest.approx(0.1 * np.abs(w).sum() + 0.1 * (w**2).sum())
    np.testing.assert_allclose(backend.to_numpy(weight.grad), 0.1 * np.sign(w) + 0.2 * w)
    assert bias.grad is None  # biases are not penalised
    with pytest.raises(ValueError, match=">= 0"):
        L1L2(l1=-1)


def test_trainer_with_penalty_and_clipping_still_learns(numpy_rng):
    x = numpy_rng.normal(size=(200, 2)).astype(np.float32)
    y = (x[:, 0] > 0).astype(np.int64)
    model = diynn.mlp([2, 8, 2], rng=0)
    trainer = diynn.Trainer(
        model, diynn.CrossEntropyLoss(), diynn.Adam(model.parameters(), lr=0.02), clip_norm=1.0, penalty=L1L2(l2=1e-3)
    )
    history = trainer.fit(x, y, epochs=10, batch_size=32, progress=False)
    assert history["accuracy"][-1] > 0.9
