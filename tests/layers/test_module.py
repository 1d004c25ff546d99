"""Module and Parameter: state, modes, accumulated gradients (diynn/module.py)."""

import numpy as np
import pytest

import diynn
from diynn import Linear, ReLU, Sequential


def test_state_dict_round_trip_and_mismatch(backend):
    model = diynn.mlp([4, 5, 3], rng=0)
    other = diynn.mlp([4, 5, 3], rng=1)
    other.load_state_dict(model.state_dict())
    for a, b in zip(model.parameters(), other.parameters()):
        np.testing.assert_array_equal(backend.to_numpy(a.data), backend.to_numpy(b.data))
    with pytest.raises(KeyError, match="missing"):
        other.load_state_dict({})
    wrong = diynn.mlp([4, 6, 3], rng=0).state_dict()
    with pytest.raises(ValueError, match="shape"):
        other.load_state_dict(wrong)


def test_train_eval_modes_propagate():
    model = Sequential(Linear(2, 2, rng=0), Sequential(ReLU()))
    model.eval()
    assert not any(module.training for module in model.modules())
    model.train()
    assert all(module.training for module in model.modules())


def test_backward_accumulates_parameter_gradients(backend, numpy_rng):
    layer = Linear(3, 2, rng=0)
    x = backend.asarray(numpy_rng.normal(size=(4, 3)).astype(np.float32))
    g = backend.asarray(numpy_rng.normal(size=(4, 2)).astype(np.float32))
    layer(x)
    layer.backward(g)
    once = backend.to_numpy(layer.weight.grad).copy()
    layer(x)
    layer.backward(g)
    np.testing.assert_allclose(backend.to_numpy(layer.weight.grad), 2 * once, rtol=1e-6)
    layer.zero_grad()
    assert layer.weight.grad is None


def test_a_gradient_of_another_shape_or_dtype_is_not_accumulated():
    parameter = diynn.Parameter(np.zeros((3, 2), np.float32))
    parameter.accumulate(np.ones((3, 2), np.float32))
    with pytest.raises(ValueError, match=r"its parameter's shape \(3, 2\), got \(1, 2\)"):
        parameter.accumulate(np.ones((1, 2), np.float32))  # would broadcast into every row
    with pytest.raises(TypeError, match="its parameter's dtype float32, got float64"):
        parameter.accumulate(np.ones((3, 2)))
    np.testing.assert_array_equal(parameter.grad, np.ones((3, 2), np.float32))


def test_first_layer_may_skip_the_input_gradient(backend, numpy_rng):
    model = diynn.mlp([3, 4, 2], rng=0)
    x = backend.asarray(numpy_rng.normal(size=(5, 3)).astype(np.float32))
    g = backend.asarray(numpy_rng.normal(size=(5, 2)).astype(np.float32))
    model(x)
    full = model.backward(g)
    weight_grad = backend.to_numpy(model[0].weight.grad).copy()
    model.zero_grad()
    model(x)
    assert full is not None and model.backward(g, input_grad=False) is None
    np.testing.assert_array_equal(backend.to_numpy(model[0].weight.grad), weight_grad)
