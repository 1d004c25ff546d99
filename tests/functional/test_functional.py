"""The functional API: each pair against torch.nn.functional (forward and every gradient, float64;
skipped without torch), and its argument checks."""

import numpy as np
import pytest

import diynn.functional as F

torch = pytest.importorskip("torch")
TF = torch.nn.functional

OPS = {
    # name: (ours forward, ours backward, torch op, input shape, parameter shapes)
    "linear": (F.linear, F.linear_backward, TF.linear, (4, 5), [(3, 5), (3,)]),
    "conv2d": (
        lambda x, w, b: F.conv2d(x, w, b, stride=2, padding=1),
        F.conv2d_backward,
        lambda x, w, b: TF.conv2d(x, w, b, stride=2, padding=1),
        (2, 3, 7, 6),
        [(4, 3, 3, 3), (4,)],
    ),
    "conv2d_one_channel": (
        lambda x, w: F.conv2d(x, w, None, padding=(1, 0)),
        F.conv2d_backward,
        lambda x, w: TF.conv2d(x, w, None, padding=(1, 0)),
        (2, 1, 5, 5),
        [(3, 1, 2, 3)],
    ),
    "conv_transpose2d": (
        lambda x, w, b: F.conv_transpose2d(x, w, b, stride=2, padding=1, output_padding=1),
        F.conv_transpose2d_backward,
        lambda x, w, b: TF.conv_transpose2d(x, w, b, stride=2, padding=1, output_padding=1),
        (2, 3, 4, 5),
        [(3, 2, 3, 3), (2,)],
    ),
    "max_pool2d": (
        lambda x: F.max_pool2d(x, 3, stride=2, padding=1),
        F.max_pool2d_backward,
        lambda x: TF.max_pool2d(x, 3, stride=2, padding=1),
        (2, 3, 7, 6),
        [],
    ),
    "avg_pool2d": (
        lambda x: F.avg_pool2d(x, 2, stride=3, padding=1),
        F.avg_pool2d_backward,
        lambda x: TF.avg_pool2d(x, 2, stride=3, padding=1),
        (2, 3, 9, 9),
        [],
    ),
    "relu": (F.relu, F.relu_backward, TF.relu, (4, 5), []),
    "leaky_relu": (lambda x: F.leaky_relu(x, 0.1), F.leaky_relu_backward, lambda x: TF.leaky_relu(x, 0.1), (4, 5), []),
    "tanh": (F.tanh, F.tanh_backward, torch.tanh, (4, 5), []),
    "sigmoid": (F.sigmoid, F.sigmoid_backward, torch.sigmoid, (4, 5), []),
    "softmax": (lambda x: F.softmax(x, 1), F.softmax_backward, lambda x: TF.softmax(x, 1), (4, 5), []),
}


def as_tuple(grads):
    return grads if isinstance(grads, tuple) else (grads,)


@pytest.mark.parametrize("name", OPS)
def test_functional_pair_matches_torch(name, numpy_rng):
    forward, backward, theirs, shape, parameter_shapes = OPS[name]
    arrays = [numpy_rng.normal(size=shape)] + [numpy_rng.normal(size=s) for s in parameter_shapes]
    y, cache = forward(*arrays)
    grad_y = numpy_rng.normal(size=y.shape)
    grads = as_tuple(backward(cache, grad_y))
    tensors = [torch.from_numpy(a).requires_grad_(True) for a in arrays]
    y_t = theirs(*tensors)
    y_t.backward(torch.from_numpy(grad_y))
    np.testing.assert_allclose(y, y_t.detach().numpy(), rtol=1e-10, atol=1e-12)
    for index, (ours, tensor) in enumerate(zip(grads, tensors)):
        np.testing.assert_allclose(ours, tensor.grad.numpy(), rtol=1e-10, atol=1e-12, err_msg=f"gradient {index}")


def test_batch_norm_pair_matches_torch(numpy_rng):
    x, weight, bias = numpy_rng.normal(size=(4, 3, 5)), numpy_rng.normal(size=3), numpy_rng.normal(size=3)
    running_mean, running_var = np.zeros(3), np.ones(3)
    y, cache = F.batch_norm(x, weight, bias, running_mean, running_var, training=True, momentum=0.2)
    grad_y = numpy_rng.normal(size=y.shape)
    grad_x, grad_weight, grad_bias = F.batch_norm_backward(cache, grad_y)
    tensors = [torch.from_numpy(a).requires_grad_(True) for a in (x, weight, bias)]
    theirs_mean, theirs_var = torch.zeros(3, dtype=torch.float64), torch.ones(3, dtype=torch.float64)
    y_t = TF.batch_norm(tensors[0], theirs_mean, theirs_var, tensors[1], tensors[2], training=True, momentum=0.2)
    y_t.backward(torch.from_numpy(grad_y))
    np.testing.assert_allclose(y, y_t.detach().numpy(), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(running_mean, theirs_mean.numpy(), rtol=1e-10)
    np.testing.assert_allclose(running_var, theirs_var.numpy(), rtol=1e-10)
    for ours, tensor in zip((grad_x, grad_weight, grad_bias), tensors):
        np.testing.assert_allclose(ours, tensor.grad.numpy(), rtol=1e-10, atol=1e-12)


LOSSES = {
    "mse_loss": (F.mse_loss, F.mse_loss_backward, TF.mse_loss, "float"),
    "cross_entropy": (F.cross_entropy, F.cross_entropy_backward, TF.cross_entropy, "labels"),
    "binary_cross_entropy_with_logits": (
        F.binary_cross_entropy_with_logits,
        F.binary_cross_entropy_with_logits_backward,
        TF.binary_cross_entropy_with_logits,
        "float",
    ),
}


@pytest.mark.parametrize("name", LOSSES)
def test_functional_loss_and_its_scaled_backward_match_torch(name, numpy_rng):
    ours, backward, theirs, kind = LOSSES[name]
    prediction = numpy_rng.normal(size=(6, 4))
    target = numpy_rng.integers(0, 4, size=6) if kind == "labels" else numpy_rng.uniform(size=(6, 4))
    value, cache = ours(prediction, target)
    prediction_t = torch.from_numpy(prediction).requires_grad_(True)
    value_t = theirs(prediction_t, torch.from_numpy(target))
    (2.5 * value_t).backward()
    assert float(value) == pytest.approx(value_t.item(), rel=1e-12)
    np.testing.assert_allclose(backward(cache, 2.5), prediction_t.grad.numpy(), rtol=1e-10, atol=1e-14)


def test_functional_arguments_are_checked():
    x = np.zeros((1, 1, 4, 4))
    with pytest.raises(ValueError, match="stride must be an integer >= 1"):
        F.max_pool2d(x, 2, stride=0)
    with pytest.raises(ValueError, match=r"padding \(2, 2\) must be at most half the kernel"):
        F.avg_pool2d(x, 2, padding=2)
    with pytest.raises(ValueError, match="smaller than the kernel"):
        F.conv2d(x, np.zeros((1, 1, 5, 5)))
