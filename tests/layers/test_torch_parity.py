"""Outputs, input gradients and parameter gradients against PyTorch (skipped without torch)."""

import numpy as np
import pytest

import diynn

torch = pytest.importorskip("torch")
torch.set_default_dtype(torch.float64)


def to_torch(array):
    return torch.tensor(np.asarray(array, dtype=np.float64))


def compare_module(ours, theirs, x, backend, numpy_rng):
    """Forward and backward of `ours` (float64) vs torch module `theirs` with copied parameters."""
    xp = backend.xp
    ours.astype(xp.float64)
    with torch.no_grad():
        for (_, p), q in zip(ours.named_parameters(), theirs.parameters()):
            q.copy_(to_torch(backend.to_numpy(p.data)))
    with diynn.enable_grad():  # eval-mode modules too keep what their backward needs
        y = ours(backend.asarray(x, dtype=xp.float64))
    grad_output = numpy_rng.normal(size=tuple(y.shape))
    grad_x = ours.backward(backend.asarray(grad_output))
    x_t = to_torch(x).requires_grad_(True)
    y_t = theirs(x_t)
    y_t.backward(to_torch(grad_output))
    np.testing.assert_allclose(backend.to_numpy(y), y_t.detach().numpy(), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(backend.to_numpy(grad_x), x_t.grad.numpy(), rtol=1e-10, atol=1e-12)
    for (name, p), q in zip(ours.named_parameters(), theirs.parameters()):
        np.testing.assert_allclose(backend.to_numpy(p.grad), q.grad.numpy(), rtol=1e-10, atol=1e-12, err_msg=name)


MODULES = {
    "linear": (lambda: diynn.Linear(5, 3, rng=0), lambda: torch.nn.Linear(5, 3)),
    "linear_no_bias": (lambda: diynn.Linear(5, 3, bias=False, rng=0), lambda: torch.nn.Linear(5, 3, bias=False)),
    "relu": (diynn.ReLU, torch.nn.ReLU),
    "leaky_relu": (lambda: diynn.LeakyReLU(0.2), lambda: torch.nn.LeakyReLU(0.2)),
    "tanh": (diynn.Tanh, torch.nn.Tanh),
    "sigmoid": (diynn.Sigmoid, torch.nn.Sigmoid),
    "softmax": (diynn.Softmax, lambda: torch.nn.Softmax(dim=-1)),
}


@pytest.mark.parametrize("name", MODULES)
def test_module_matches_torch(backend, name, numpy_rng):
    ours, theirs = MODULES[name]
    compare_module(ours(), theirs(), numpy_rng.normal(size=(4, 5)), backend, numpy_rng)


LOSSES = {
    "mse": (diynn.MSELoss, torch.nn.MSELoss, "float"),
    "cross_entropy": (diynn.CrossEntropyLoss, torch.nn.CrossEntropyLoss, "labels"),
    "cross_entropy_soft": (diynn.CrossEntropyLoss, torch.nn.CrossEntropyLoss, "probabilities"),
    "cross_entropy_smoothed": (
        lambda: diynn.CrossEntropyLoss(label_smoothing=0.1),
        lambda: torch.nn.CrossEntropyLoss(label_smoothing=0.1),
        "labels",
    ),
    "cross_entropy_soft_smoothed": (
        lambda: diynn.CrossEntropyLoss(label_smoothing=0.3),
        lambda: torch.nn.CrossEntropyLoss(label_smoothing=0.3),
        "probabilities",
    ),
    "bce": (diynn.BCELoss, torch.nn.BCELoss, "float"),
    "bce_logits": (diynn.BCEWithLogitsLoss, torch.nn.BCEWithLogitsLoss, "float"),
}


@pytest.mark.parametrize("name", LOSSES)
def test_loss_matches_torch(backend, name, numpy_rng):
    ours, theirs, kind = LOSSES[name]
    prediction = numpy_rng.uniform(0.05, 0.95, size=(6, 4)) if name == "bce" else numpy_rng.normal(size=(6, 4))
    target = {
        "float": numpy_rng.uniform(size=(6, 4)),
        "labels": numpy_rng.integers(0, 4, size=6),
        "probabilities": numpy_rng.dirichlet(np.ones(4), size=6),
    }[kind]
    loss = ours()
    value = loss(backend.asarray(prediction), backend.asarray(target))
    grad = loss.backward()
    prediction_t = to_torch(prediction).requires_grad_(True)
    target_t = torch.tensor(target)
    value_t = theirs()(prediction_t, target_t)
    value_t.backward()
    assert float(value) == pytest.approx(value_t.item(), rel=1e-10)
    np.testing.assert_allclose(backend.to_numpy(grad), prediction_t.grad.numpy(), rtol=1e-9, atol=1e-12)


OPTIMISERS = {
    "sgd": (lambda p: diynn.SGD(p, lr=0.1), lambda p: torch.optim.SGD(p, lr=0.1)),
    "sgd_nesterov": (
        lambda p: diynn.SGD(p, lr=0.1, momentum=0.9, nesterov=True, weight_decay=0.01),
        lambda p: torch.optim.SGD(p, lr=0.1, momentum=0.9, nesterov=True, weight_decay=0.01),
    ),
    "adam": (
        lambda p: diynn.Adam(p, lr=0.01, weight_decay=0.1),
        lambda p: torch.optim.Adam(p, lr=0.01, weight_decay=0.1),
    ),
    "adamw": (
        lambda p: diynn.AdamW(p, lr=0.01, weight_decay=0.1),
        lambda p: torch.optim.AdamW(p, lr=0.01, weight_decay=0.1),
    ),
}


@pytest.mark.parametrize("name", OPTIMISERS)
def test_optimiser_steps_match_torch(backend, name, numpy_rng):
    ours_factory, theirs_factory = OPTIMISERS[name]
    model = diynn.Linear(4, 3, rng=0).astype(backend.xp.float64)
    reference = torch.nn.Linear(4, 3)
    with torch.no_grad():
        reference.weight.copy_(to_torch(backend.to_numpy(model.weight.data)))
        reference.bias.copy_(to_torch(backend.to_numpy(model.bias.data)))
    ours, theirs = ours_factory(model.parameters()), theirs_factory(reference.parameters())
    loss, reference_loss = diynn.CrossEntropyLoss(), torch.nn.CrossEntropyLoss()
    for _ in range(3):
        x = numpy_rng.normal(size=(8, 4))
        y = numpy_rng.integers(0, 3, size=8)
        loss(model(backend.asarray(x)), backend.asarray(y))
        model.backward(loss.backward())
        ours.step()
        ours.zero_grad()
        theirs.zero_grad()
        reference_loss(reference(to_torch(x)), torch.tensor(y)).backward()
        theirs.step()
    np.testing.assert_allclose(backend.to_numpy(model.weight.data), reference.weight.detach().numpy(), rtol=1e-10)
    np.testing.assert_allclose(backend.to_numpy(model.bias.data), reference.bias.detach().numpy(), rtol=1e-10)


CONV_MODULES = {
    "conv2d": (lambda: diynn.Conv2d(3, 4, 3, rng=0), lambda: torch.nn.Conv2d(3, 4, 3)),
    "conv2d_stride2_pad1": (
        lambda: diynn.Conv2d(3, 4, (3, 2), stride=2, padding=1, rng=0),
        lambda: torch.nn.Conv2d(3, 4, (3, 2), stride=2, padding=1),
    ),
    "conv2d_one_channel": (  # one input channel: the batch-major path
        lambda: diynn.Conv2d(1, 4, (3, 2), stride=2, padding=1, rng=0),
        lambda: torch.nn.Conv2d(1, 4, (3, 2), stride=2, padding=1),
    ),
    "conv_transpose2d": (
        lambda: diynn.ConvTranspose2d(3, 2, 3, stride=2, padding=1, output_padding=1, rng=0),
        lambda: torch.nn.ConvTranspose2d(3, 2, 3, stride=2, padding=1, output_padding=1),
    ),
    "maxpool": (lambda: diynn.MaxPool2d(2), lambda: torch.nn.MaxPool2d(2)),
    "maxpool_overlapping": (
        lambda: diynn.MaxPool2d(3, stride=2, padding=1),
        lambda: torch.nn.MaxPool2d(3, stride=2, padding=1),
    ),
    "avgpool": (lambda: diynn.AvgPool2d(2, padding=1), lambda: torch.nn.AvgPool2d(2, padding=1)),
    "batchnorm2d": (lambda: diynn.BatchNorm2d(3), lambda: torch.nn.BatchNorm2d(3)),
    "flatten": (diynn.Flatten, torch.nn.Flatten),
}


@pytest.mark.parametrize("name", CONV_MODULES)
def test_conv_module_matches_torch(backend, name, numpy_rng):
    ours, theirs = CONV_MODULES[name]
    channels = 1 if name == "conv2d_one_channel" else 3
    compare_module(ours(), theirs(), numpy_rng.normal(size=(2, channels, 6, 5)), backend, numpy_rng)


@pytest.mark.parametrize("shape", [(6, 3), (4, 3, 5)])
def test_batchnorm_running_stats_and_eval_match_torch(backend, shape, numpy_rng):
    ours, theirs = diynn.BatchNorm1d(3, momentum=0.2).astype(backend.xp.float64), torch.nn.BatchNorm1d(3, momentum=0.2)
    for _ in range(3):
        x = numpy_rng.normal(loc=1.0, size=shape)
        ours(backend.asarray(x))
        theirs(to_torch(x))
    np.testing.assert_allclose(backend.to_numpy(ours.running_mean), theirs.running_mean.numpy(), rtol=1e-10)
    np.testing.assert_allclose(backend.to_numpy(ours.running_var), theirs.running_var.numpy(), rtol=1e-10)
    ours.eval()
    theirs.eval()
    compare_module(ours, theirs, numpy_rng.normal(size=shape), backend, numpy_rng)


@pytest.mark.parametrize(
    "ours, theirs",
    [
        (
            lambda: diynn.Conv1d(3, 4, 3, stride=2, padding=1, rng=0),
            lambda: torch.nn.Conv1d(3, 4, 3, stride=2, padding=1),
        ),
        (lambda: diynn.MaxPool1d(3, stride=2, padding=1), lambda: torch.nn.MaxPool1d(3, stride=2, padding=1)),
    ],
    ids=["conv1d", "maxpool1d"],
)
def test_one_dimensional_layers_match_torch(backend, ours, theirs, numpy_rng):
    compare_module(ours(), theirs(), numpy_rng.normal(size=(2, 3, 9)), backend, numpy_rng)
