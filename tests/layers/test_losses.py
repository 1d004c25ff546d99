import numpy as np
import pytest

import diynn
from diynn import BCELoss, BCEWithLogitsLoss, CrossEntropyLoss, MSELoss, gradcheck_loss


def test_mse_gradient(backend, numpy_rng):
    target = backend.asarray(numpy_rng.normal(size=(4, 3)))
    assert gradcheck_loss(MSELoss(), numpy_rng.normal(size=(4, 3)), target)


def test_cross_entropy_gradient_with_labels(backend, numpy_rng):
    labels = backend.asarray(np.array([0, 2, 1, 2]))
    assert gradcheck_loss(CrossEntropyLoss(), numpy_rng.normal(size=(4, 3)), labels)


def test_cross_entropy_gradient_with_soft_targets(backend, numpy_rng):
    target = numpy_rng.dirichlet(np.ones(3), size=4)
    assert gradcheck_loss(CrossEntropyLoss(), numpy_rng.normal(size=(4, 3)), backend.asarray(target))


def test_cross_entropy_gradient_with_label_smoothing(backend, numpy_rng):
    labels = backend.asarray(np.array([0, 2, 1, 2]))
    assert gradcheck_loss(CrossEntropyLoss(label_smoothing=0.2), numpy_rng.normal(size=(4, 3)), labels)
    target = backend.asarray(numpy_rng.dirichlet(np.ones(3), size=4))
    assert gradcheck_loss(CrossEntropyLoss(label_smoothing=0.2), numpy_rng.normal(size=(4, 3)), target)


def test_label_smoothing_is_the_smoothed_one_hot_target(backend, numpy_rng):
    logits = backend.asarray(numpy_rng.normal(size=(5, 4)))
    labels = np.array([3, 0, 1, 1, 2])
    smoothed = np.eye(4)[labels] * 0.9 + 0.1 / 4
    by_label = float(CrossEntropyLoss(label_smoothing=0.1)(logits, backend.asarray(labels)))
    assert by_label == pytest.approx(float(CrossEntropyLoss()(logits, backend.asarray(smoothed))), rel=1e-12)
    with pytest.raises(ValueError, match="class labels must be in"):
        CrossEntropyLoss(label_smoothing=0.1)(logits, backend.asarray(np.array([0, 1, 4, 1, 2])))
    with pytest.raises(ValueError, match="label_smoothing must be"):
        CrossEntropyLoss(label_smoothing=1.5)


def test_bce_gradients(backend, numpy_rng):
    target = backend.asarray(numpy_rng.uniform(size=(3, 4)))
    assert gradcheck_loss(BCELoss(), numpy_rng.uniform(0.05, 0.95, size=(3, 4)), target)
    assert gradcheck_loss(BCEWithLogitsLoss(), numpy_rng.normal(size=(3, 4)), target)


def test_cross_entropy_labels_equal_one_hot(backend, numpy_rng):
    logits = backend.asarray(numpy_rng.normal(size=(5, 4)).astype(np.float32))
    labels = np.array([3, 0, 1, 1, 2])
    loss = CrossEntropyLoss()
    by_label = float(loss(logits, backend.asarray(labels)))
    by_one_hot = float(loss(logits, backend.asarray(np.eye(4, dtype=np.float32)[labels])))
    assert by_label == pytest.approx(by_one_hot, rel=1e-6)
    manual = np.log(np.exp(backend.to_numpy(logits)).sum(1)) - backend.to_numpy(logits)[range(5), labels]
    assert by_label == pytest.approx(manual.mean(), rel=1e-5)


def test_cross_entropy_is_stable_for_huge_logits(backend):
    logits = backend.asarray(np.array([[1000.0, 0.0], [0.0, -1000.0]], np.float32))
    loss = CrossEntropyLoss()
    value = float(loss(logits, backend.asarray(np.array([1, 1]))))
    assert value == pytest.approx(1000.0, rel=1e-6)
    assert np.isfinite(backend.to_numpy(loss.backward())).all()


def test_bce_with_logits_is_stable(backend):
    z = backend.asarray(np.array([[-500.0, 500.0]], np.float32))
    value = float(BCEWithLogitsLoss()(z, backend.asarray(np.array([[1.0, 0.0]], np.float32))))
    assert value == pytest.approx(500.0, rel=1e-6)


def test_losses_reject_mismatched_shapes(backend):
    a = backend.asarray(np.zeros((4, 3), np.float32))
    with pytest.raises(ValueError, match=r"prediction shape \(4, 3\) != target shape \(4, 1\)"):
        MSELoss()(a, backend.asarray(np.zeros((4, 1), np.float32)))
    with pytest.raises(ValueError, match="5 labels for 4"):
        CrossEntropyLoss()(a, backend.asarray(np.zeros(5, np.int64)))
    with pytest.raises(ValueError, match=r"logits \(N, C\)"):
        CrossEntropyLoss()(backend.asarray(np.zeros(4, np.float32)), backend.asarray(np.zeros(4, np.int64)))
    with pytest.raises(ValueError, match="integer labels"):
        CrossEntropyLoss()(a, backend.asarray(np.zeros(4, np.float32)))


def test_cross_entropy_names_a_label_outside_the_classes(backend):
    if backend.name == "cupy":
        pytest.skip("the fused GPU kernel marks it with NaN (tests/backends/test_backends.py)")
    logits = backend.asarray(np.zeros((3, 4), np.float32))
    for label in (4, -1):
        with pytest.raises(ValueError, match=rf"labels must be in \[0, 4\) for 4 logits, got {label}"):
            CrossEntropyLoss()(logits, backend.asarray(np.array([0, label, 1])))


# -- freezing, the perceptual loss and NT-Xent (float64 gradient checks, PyTorch parity) --


def feature_network(backend):
    """A small trained-classifier-shaped CNN (conv-BN-ReLU-pool, conv-ReLU) in float64."""
    network = diynn.Sequential(
        diynn.Conv2d(1, 3, 3, padding=1, rng=0),
        diynn.BatchNorm2d(3),
        diynn.ReLU(),
        diynn.MaxPool2d(2),
        diynn.Conv2d(3, 4, 3, padding=1, rng=1),
        diynn.Tanh(),
    ).astype(backend.xp.float64)
    network[1].running_mean = backend.asarray(np.array([0.1, -0.2, 0.3]))
    network[1].running_var = backend.asarray(np.array([1.5, 0.7, 1.1]))
    return network


def test_frozen_parameters_get_no_gradient_but_the_input_does(backend, numpy_rng):
    model = diynn.Sequential(diynn.Linear(3, 4, rng=0), diynn.ReLU(), diynn.Linear(4, 2, rng=1))
    model[0].requires_grad_(False)
    x = backend.asarray(numpy_rng.normal(size=(5, 3)).astype(np.float32))
    y = model(x)
    grad_input = model.backward(backend.xp.ones_like(y))
    assert model[0].weight.grad is None and model[0].bias.grad is None
    assert model[2].weight.grad is not None and grad_input is not None
    before = backend.to_numpy(model[0].weight.data).copy()
    optimizer = diynn.SGD(model.parameters(), lr=0.1)
    model[0].weight.grad = backend.xp.ones_like(model[0].weight.data)  # even a stray gradient is ignored
    optimizer.step()
    np.testing.assert_array_equal(backend.to_numpy(model[0].weight.data), before)
    assert model.freeze() is model and not model.training
    assert not any(p.requires_grad for p in model.parameters())


@pytest.mark.parametrize("pixel_weight", [0.0, 0.5])
def test_perceptual_loss_gradients(backend, numpy_rng, pixel_weight):
    loss = diynn.PerceptualLoss(feature_network(backend), {2: 1.0, 5: 0.5}, pixel_weight=pixel_weight)
    prediction = numpy_rng.random((2, 1, 6, 6))
    target = backend.asarray(numpy_rng.random((2, 1, 6, 6)))
    assert gradcheck_loss(loss, prediction, target)
    assert all(p.grad is None for p in loss.network.parameters())


def test_perceptual_loss_rejects_bad_layers(backend):
    network = feature_network(backend)
    with pytest.raises(ValueError, match="layer index 9"):
        diynn.PerceptualLoss(network, {9: 1.0})
    with pytest.raises(TypeError, match="Sequential"):
        diynn.PerceptualLoss(diynn.Linear(2, 2), {0: 1.0})


@pytest.mark.parametrize("temperature", [0.1, 0.5])
def test_nt_xent_gradients(backend, numpy_rng, temperature):
    z = numpy_rng.normal(size=(6, 4))
    assert gradcheck_loss(diynn.NTXentLoss(temperature), z, backend.asarray(np.zeros(0)))


def test_nt_xent_rejects_an_odd_batch(backend):
    with pytest.raises(ValueError, match="two views"):
        diynn.NTXentLoss()(backend.asarray(np.ones((5, 3))), None)


def test_perceptual_loss_matches_torch(numpy_rng):
    torch = pytest.importorskip("torch")
    with diynn.use("numpy") as backend:
        network = feature_network(backend)
        loss = diynn.PerceptualLoss(network, {2: 1.0, 5: 0.5}, pixel_weight=0.3)
        prediction, target = numpy_rng.random((2, 1, 6, 6)), numpy_rng.random((2, 1, 6, 6))
        value = float(loss(prediction, target))
        grad = loss.backward()
    theirs = torch.nn.Sequential(
        torch.nn.Conv2d(1, 3, 3, padding=1),
        torch.nn.BatchNorm2d(3),
        torch.nn.ReLU(),
        torch.nn.MaxPool2d(2),
        torch.nn.Conv2d(3, 4, 3, padding=1),
        torch.nn.Tanh(),
    ).double()
    state = {name: torch.from_numpy(np.asarray(array)) for name, array in network.state_dict().items()}
    theirs.load_state_dict(state, strict=False)
    theirs.eval()
    p = torch.tensor(prediction, requires_grad=True)
    t = torch.tensor(target)

    def features(x):
        return theirs[:3](x), theirs(x)

    (p2, p5), (t2, t5) = features(p), features(t)
    expected = 0.3 * ((p - t) ** 2).mean() + ((p2 - t2) ** 2).mean() + 0.5 * ((p5 - t5) ** 2).mean()
    expected.backward()
    np.testing.assert_allclose(value, expected.item(), rtol=1e-12)
    np.testing.assert_allclose(grad, p.grad.numpy(), rtol=1e-10, atol=1e-14)


def test_nt_xent_matches_torch(numpy_rng):
    torch = pytest.importorskip("torch")
    z = numpy_rng.normal(size=(8, 5))
    with diynn.use("numpy"):
        loss = diynn.NTXentLoss(0.3)
        value, grad = float(loss(z, None)), loss.backward()
    zt = torch.tensor(z, requires_grad=True)
    u = torch.nn.functional.normalize(zt, dim=1)
    logits = u @ u.T / 0.3
    logits = logits.masked_fill(torch.eye(8, dtype=torch.bool), float("-inf"))
    positives = torch.cat([torch.arange(4, 8), torch.arange(0, 4)])
    expected = torch.nn.functional.cross_entropy(logits, positives)
    expected.backward()
    np.testing.assert_allclose(value, expected.item(), rtol=1e-12)
    np.testing.assert_allclose(grad, zt.grad.numpy(), rtol=1e-10, atol=1e-14)
