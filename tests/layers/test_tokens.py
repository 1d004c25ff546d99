"""The token layers of a vision transformer (diynn/layers/tokens.py, diynn/functional/tokens.py):
PositionEmbedding, ClassToken and TokenPool. Gradients against finite differences on every backend
(a parameter shared by the batch gets the batch's sum), forward and every gradient against the same
arithmetic in PyTorch in float64, save/load through the config, and the errors."""

import numpy as np
import pytest

import diynn
from diynn import functional as F

torch = pytest.importorskip("torch", reason="the parity tests compare with PyTorch (pip install torch==2.13.0)")
from torch_references import torch_copy  # noqa: E402  (needs torch)

CLOSE = {"rtol": 1e-12, "atol": 1e-12}


def randomised(module, rng):
    """`module` in float64, every parameter drawn from N(0, 1) (a zero class token would hide a swap)."""
    backend = diynn.get_backend()
    module.astype(backend.xp.float64)
    for parameter in module.parameters():
        parameter.data = backend.asarray(rng.standard_normal(parameter.data.shape))
    return module


LAYERS = {
    "position_embedding": lambda: diynn.PositionEmbedding(5, 3, rng=0),
    "class_token": lambda: diynn.ClassToken(3),
    "mean_pool": lambda: diynn.TokenPool("mean"),
    "first_pool": lambda: diynn.TokenPool("first"),
    "class_token_then_first": lambda: diynn.Sequential(diynn.ClassToken(3), diynn.TokenPool("first")),
}


@pytest.mark.parametrize("name", LAYERS)
def test_gradients(backend, name, numpy_rng):
    module = randomised(LAYERS[name](), numpy_rng)
    # a Tanh after a pooling: a loss that is not linear in y (the sums over the batch must be right)
    model = diynn.Sequential(diynn.Tanh(), module, diynn.Tanh())
    assert diynn.gradcheck(model, backend.asarray(numpy_rng.standard_normal((4, 5, 3))))


@pytest.mark.parametrize("name", LAYERS)
def test_matches_torch(name, numpy_rng):
    ours = randomised(LAYERS[name](), numpy_rng)
    theirs = torch_copy(ours).double()
    theirs.load_state_dict({key: torch.from_numpy(np.asarray(value)) for key, value in ours.state_dict().items()})
    x = numpy_rng.standard_normal((4, 5, 3))
    with diynn.enable_grad():
        y = ours(x)
    grad_y = numpy_rng.standard_normal(y.shape)
    ours.zero_grad()
    grad_x = ours.backward(grad_y)
    tx = torch.from_numpy(x).requires_grad_()
    ty = theirs(tx)
    ty.backward(torch.from_numpy(grad_y))
    np.testing.assert_allclose(y, ty.detach().numpy(), **CLOSE)
    np.testing.assert_allclose(grad_x, tx.grad.numpy(), **CLOSE)
    named = dict(theirs.named_parameters())
    for key, parameter in ours.named_parameters():
        np.testing.assert_allclose(parameter.grad, named[key].grad.numpy(), **CLOSE, err_msg=key)


def test_a_shared_parameter_gets_the_batch_sum():
    """The arithmetic written out: dP = sum_n dL/dy_n, dc = sum_n dL/dy_n0."""
    rng = np.random.default_rng(0)
    grad_y = rng.standard_normal((3, 4, 2))
    _, cache = F.position_embedding(rng.standard_normal((3, 4, 2)), rng.standard_normal((1, 4, 2)))
    grad_x, grad_weight = F.position_embedding_backward(cache, grad_y)
    np.testing.assert_array_equal(grad_x, grad_y)
    np.testing.assert_allclose(grad_weight[0], grad_y[0] + grad_y[1] + grad_y[2])
    _, cache = F.class_token(rng.standard_normal((3, 3, 2)), rng.standard_normal((1, 1, 2)))
    grad_x, grad_token = F.class_token_backward(cache, grad_y)
    np.testing.assert_array_equal(grad_x, grad_y[:, 1:])
    np.testing.assert_allclose(grad_token[0, 0], grad_y[:, 0].sum(axis=0))
    _, cache = F.token_pool(grad_y, "mean")
    np.testing.assert_allclose(F.token_pool_backward(cache, np.ones((3, 2))), np.full((3, 4, 2), 0.25))


@pytest.mark.parametrize("name", LAYERS)
def test_save_and_load(tmp_path, name, numpy_rng):
    model = diynn.Sequential(randomised(LAYERS[name](), numpy_rng)).eval()
    loaded = diynn.load_model(diynn.save_model(model, tmp_path / "m.npz")).eval()
    assert repr(loaded) == repr(model)
    x = numpy_rng.standard_normal((2, 5, 3))
    np.testing.assert_array_equal(loaded(x), model(x))


def test_errors_name_what_was_expected():
    x = np.zeros((2, 5, 3), np.float32)
    with pytest.raises(ValueError, match="position_embedding expects size 4 on axis 1"):
        diynn.PositionEmbedding(4, 3)(x)
    with pytest.raises(ValueError, match="class_token expects size 8 on axis 2"):
        diynn.ClassToken(8)(x)
    with pytest.raises(TypeError, match="expects dtype float32"):
        diynn.PositionEmbedding(5, 3)(x.astype(np.float64))
    with pytest.raises(ValueError, match="token_pool expects an input with 3 axes"):
        diynn.TokenPool()(np.zeros((2, 3), np.float32))
    with pytest.raises(ValueError, match="unknown mode 'max'"):
        diynn.TokenPool("max")
    with pytest.raises(ValueError, match="length"):
        diynn.PositionEmbedding(0, 3)
