import numpy as np
import pytest

import diynn
from diynn import LeakyReLU, Linear, ReLU, Sequential, Sigmoid, Softmax, Tanh, gradcheck

ELEMENTWISE = [ReLU, lambda: LeakyReLU(0.1), Tanh, Sigmoid, Softmax, lambda: Softmax(axis=0)]


@pytest.mark.parametrize("make", ELEMENTWISE, ids=["relu", "leaky", "tanh", "sigmoid", "softmax", "softmax0"])
def test_activation_gradients(backend, make, numpy_rng):
    assert gradcheck(make(), numpy_rng.normal(size=(4, 5)))


@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("init", ["kaiming", "xavier"])
def test_linear_gradients(backend, bias, init, numpy_rng):
    assert gradcheck(Linear(5, 3, bias=bias, init=init, rng=0), numpy_rng.normal(size=(4, 5)))


def test_sequential_gradients(backend, numpy_rng):
    model = Sequential(Linear(6, 8, rng=1), Tanh(), Linear(8, 4, rng=2), Sigmoid())
    assert gradcheck(model, numpy_rng.normal(size=(3, 6)))


def test_gradcheck_catches_a_wrong_backward(backend, numpy_rng):
    class WrongTanh(Tanh):
        def backward(self, grad_output):
            return grad_output * (1 - self.saved_for_backward())

    with pytest.raises(diynn.GradcheckError, match="input"):
        gradcheck(WrongTanh(), numpy_rng.normal(size=(3, 3)))


def test_sigmoid_does_not_overflow(backend):
    y = backend.to_numpy(Sigmoid()(backend.asarray(np.array([-1000.0, 0.0, 1000.0], np.float32))))
    np.testing.assert_array_equal(y, [0.0, 0.5, 1.0])


def test_linear_is_float32_by_default(backend):
    layer = Linear(3, 2, rng=0)
    y = layer(backend.asarray(np.ones((4, 3), np.float32)))
    assert layer.weight.data.dtype == backend.xp.float32 and y.dtype == backend.xp.float32


def test_linear_initialisation_scale(backend):
    kaiming = backend.to_numpy(Linear(1000, 200, rng=0).weight.data)
    xavier = backend.to_numpy(Linear(1000, 200, init="xavier", rng=0).weight.data)
    assert kaiming.std() == pytest.approx(np.sqrt(2 / 1000), rel=0.02)
    assert np.abs(xavier).max() <= np.sqrt(6 / 1200)
    assert xavier.std() == pytest.approx(np.sqrt(2 / 1200), rel=0.02)
    with pytest.raises(ValueError, match="unknown init 'zeros'"):
        Linear(2, 2, init="zeros")


def test_linear_rejects_wrong_shape_and_dtype(backend):
    layer = Linear(3, 2, rng=0)
    with pytest.raises(ValueError, match=r"size 3 on axis 1, got shape \(4, 5\)"):
        layer(backend.asarray(np.ones((4, 5), np.float32)))
    with pytest.raises(ValueError, match="2 axes"):
        layer(backend.asarray(np.ones((4,), np.float32)))
    with pytest.raises(TypeError, match="float64"):
        layer(backend.asarray(np.ones((4, 3), np.float64)))


def test_sequential_rejects_non_modules():
    with pytest.raises(TypeError, match="item 1 is int"):
        Sequential(ReLU(), 3)


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
