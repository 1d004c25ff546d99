"""What forwards keep for their backward: caches only while gradients are wanted, stacked per call."""

import numpy as np
import pytest

import diynn
from diynn import Linear, ReLU


def arrays_held(module):
    """Every array a module holds outside its parameters and buffers (in attributes, lists, dicts)."""
    found = []

    def visit(value, where):
        if hasattr(value, "shape") and hasattr(value, "dtype"):
            found.append(where)
        elif isinstance(value, (list, tuple)):
            for index, item in enumerate(value):
                visit(item, f"{where}[{index}]")
        elif isinstance(value, dict):
            for key, item in value.items():
                visit(item, f"{where}[{key!r}]")

    for name, value in vars(module).items():
        if name in ("_parameters", "_modules") or name in module._buffers:
            continue
        visit(value, f"{type(module).__name__}.{name}")
    return found


def test_an_eval_forward_of_the_cnn_keeps_no_array_on_any_module(backend, numpy_rng):
    model = diynn.cnn(rng=0).eval()
    model(backend.asarray(numpy_rng.random((512, 1, 28, 28), dtype=np.float32)))
    assert [where for module in model.modules() for where in arrays_held(module)] == []


def test_no_grad_keeps_nothing_in_training_mode(backend, numpy_rng):
    model = diynn.cnn(rng=0)
    with diynn.no_grad():
        model(backend.asarray(numpy_rng.random((4, 1, 28, 28), dtype=np.float32)))
    assert [where for module in model.modules() for where in arrays_held(module)] == []
    model(backend.asarray(numpy_rng.random((4, 1, 28, 28), dtype=np.float32)))
    assert arrays_held(model[0]), "a training-mode forward keeps its cache for the backward"


def test_a_module_used_twice_gets_both_gradients(backend, numpy_rng):
    """y = L(relu(L(x))) with one shared L: each backward consumes the latest pending forward."""
    torch = pytest.importorskip("torch")
    shared, relu = Linear(3, 3, rng=0).astype(backend.xp.float64), ReLU()
    x, grad_y = numpy_rng.normal(size=(4, 3)), numpy_rng.normal(size=(4, 3))
    y = shared(relu(shared(backend.asarray(x))))
    grad_x = shared.backward(relu.backward(shared.backward(backend.asarray(grad_y))))
    theirs = torch.nn.Linear(3, 3).double()
    with torch.no_grad():
        theirs.weight.copy_(torch.from_numpy(backend.to_numpy(shared.weight.data)))
        theirs.bias.copy_(torch.from_numpy(backend.to_numpy(shared.bias.data)))
    x_t = torch.from_numpy(x).requires_grad_(True)
    y_t = theirs(torch.relu(theirs(x_t)))
    y_t.backward(torch.from_numpy(grad_y))
    np.testing.assert_allclose(backend.to_numpy(y), y_t.detach().numpy(), rtol=1e-12)
    np.testing.assert_allclose(backend.to_numpy(grad_x), x_t.grad.numpy(), rtol=1e-10)
    np.testing.assert_allclose(backend.to_numpy(shared.weight.grad), theirs.weight.grad.numpy(), rtol=1e-10)
    np.testing.assert_allclose(backend.to_numpy(shared.bias.grad), theirs.bias.grad.numpy(), rtol=1e-10)


def test_backward_without_a_pending_forward_names_the_module(backend):
    layer = Linear(2, 2, rng=0)
    with pytest.raises(RuntimeError, match="Linear.backward: no pending forward"):
        layer.backward(backend.asarray(np.ones((1, 2), np.float32)))
    layer.eval()
    layer(backend.asarray(np.ones((1, 2), np.float32)))
    with pytest.raises(RuntimeError, match="not in eval mode"):
        layer.backward(backend.asarray(np.ones((1, 2), np.float32)))
    loss = diynn.MSELoss()
    with pytest.raises(RuntimeError, match="MSELoss.backward: no pending forward"):
        loss.backward()


def test_enable_grad_backpropagates_through_an_eval_mode_network(backend, numpy_rng):
    model = diynn.mlp([3, 4, 2], rng=0).eval()
    with diynn.enable_grad():
        model(backend.asarray(numpy_rng.normal(size=(5, 3)).astype(np.float32)))
    grad = model.backward(backend.asarray(np.ones((5, 2), np.float32)))
    assert grad.shape == (5, 3)
    assert [where for module in model.modules() for where in arrays_held(module)] == []


def test_old_pending_caches_are_dropped_and_their_backward_is_an_error(backend):
    layer = ReLU()
    x = backend.asarray(np.ones((1, 2), np.float32))
    for _ in range(layer.max_pending + 1):
        layer(x)
    for _ in range(layer.max_pending):
        layer.backward(x)
    with pytest.raises(RuntimeError, match="was dropped"):
        layer.backward(x)
    layer.clear_pending()
    with pytest.raises(RuntimeError, match="no pending forward"):
        layer.backward(x)


def test_perceptual_loss_keeps_nothing_on_its_network_under_no_grad(backend, numpy_rng):
    network = diynn.Sequential(diynn.Conv2d(1, 2, 3, padding=1, rng=0), ReLU())
    loss = diynn.PerceptualLoss(network, {1: 1.0})
    x, target = (backend.asarray(numpy_rng.random((2, 1, 5, 5), dtype=np.float32)) for _ in range(2))
    with diynn.no_grad():
        loss(x, target)
    assert [where for module in network.modules() for where in arrays_held(module)] == []
    first, second = loss(x, target), loss(target, x)  # two pending passes: backwards latest first
    assert float(first) == pytest.approx(float(second))
    assert loss.backward().shape == x.shape and loss.backward().shape == x.shape
