"""The transformer builders of diynn/models.py: `encoder_block` (a pre-norm encoder block of
Residuals) and `vit` (a vision transformer). Gradients in float64 against finite differences,
the block against torch's own nn.TransformerEncoderLayer(norm_first=True), the whole model against
its layer-by-layer PyTorch copy to the last gradient, dropout, and the errors. (Model files,
the weights exchange with PyTorch and ONNX: tests/io/test_vit_io.py.)"""

import numpy as np
import pytest

import diynn

torch = pytest.importorskip("torch", reason="the parity tests compare with PyTorch (pip install torch==2.13.0)")
from torch_references import torch_copy  # noqa: E402  (needs torch)

pytestmark = pytest.mark.usefixtures("one_thread")  # small arrays: see conftest.py


def tiny_vit(pooling="mean", **options):
    """8x8 images in 4x4 patches: 4 tokens (5 with the class token) of 8 features, 2 blocks."""
    settings = dict(image_size=8, patch_size=4, embed_dim=8, depth=2, num_heads=2, mlp_ratio=2, classes=3)
    return diynn.vit(**{**settings, **options}, pooling=pooling, rng=0)


def randomised(model, rng):
    """Every LayerNorm's and attention's bias and the class token drawn from N(0, 0.5): their ones
    and zeros would hide a swapped or missing term."""
    backend = model.backend
    for name, parameter in model.named_parameters():
        if parameter.data.ndim == 1 or name == "3.weight":
            values = 0.5 * rng.standard_normal(parameter.data.shape)
            parameter.data = backend.asarray(values, dtype=parameter.data.dtype)
    return model


@pytest.mark.slow  # a float64 gradcheck or sweep of seconds; the full suite runs it
@pytest.mark.parametrize("pooling", ["mean", "class"])
def test_vit_gradients_in_float64(backend, pooling):
    model = randomised(tiny_vit(pooling, depth=1), np.random.default_rng(1))  # the blocks: checked below
    images = np.random.default_rng(0).standard_normal((2, 1, 8, 8))
    assert diynn.gradcheck(model, backend.asarray(images), max_checks=10)


@pytest.mark.slow  # a float64 gradcheck or sweep of seconds; the full suite runs it
def test_encoder_block_gradients_in_float64(backend):
    block = randomised(diynn.encoder_block(4, 2, mlp_ratio=1.5, rng=0), np.random.default_rng(2))
    x = backend.asarray(np.random.default_rng(3).standard_normal((2, 5, 4)))
    assert diynn.gradcheck(block, x, max_checks=60)  # every entry of the input and of its 12 parameters (<= 48 each)


def test_encoder_block_is_torchs_pre_norm_encoder_layer():
    """The same weights in torch.nn.TransformerEncoderLayer(norm_first=True, GELU): the same output,
    within 1e-9 in float64; and torch's names, mapped, are every one of the block's parameters."""
    block = randomised(diynn.encoder_block(12, 3, mlp_ratio=2, rng=0), np.random.default_rng(4)).astype(np.float64)
    theirs = torch.nn.TransformerEncoderLayer(
        12, 3, 24, dropout=0.0, activation="gelu", batch_first=True, norm_first=True, dtype=torch.float64
    )
    names = {"0.block.0": "norm1", "0.block.1": "self_attn", "1.block.0": "norm2", "1.block.1": "linear1"}
    names["1.block.3"] = "linear2"
    state = {}
    for name, value in block.state_dict().items():
        prefix = next(p for p in names if name.startswith(p + "."))
        state[names[prefix] + name[len(prefix) :]] = torch.from_numpy(value)
    theirs.load_state_dict(state)  # strict: every one of torch's parameters, none left over
    x = np.random.default_rng(5).standard_normal((3, 7, 12))
    with torch.no_grad():
        expected = theirs.eval()(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(block.eval()(x), expected, rtol=0, atol=1e-9)


@pytest.mark.parametrize("pooling", ["mean", "class"])
def test_vit_matches_torch_to_the_last_gradient(pooling):
    ours = randomised(tiny_vit(pooling), np.random.default_rng(6)).astype(np.float64)
    theirs = torch_copy(ours).double()
    theirs.load_state_dict({name: torch.from_numpy(value) for name, value in ours.state_dict().items()})
    rng = np.random.default_rng(7)
    x = rng.standard_normal((3, 1, 8, 8))
    y = ours(x)
    grad = rng.standard_normal(y.shape)
    ours.zero_grad()
    grad_x = ours.backward(grad)
    tx = torch.from_numpy(x).requires_grad_()
    ty = theirs(tx)
    ty.backward(torch.from_numpy(grad))
    np.testing.assert_allclose(y, ty.detach().numpy(), rtol=0, atol=1e-9)
    np.testing.assert_allclose(grad_x, tx.grad.numpy(), rtol=0, atol=1e-9)
    named = dict(theirs.named_parameters())
    assert len(named) == len(ours.parameters())
    for name, parameter in ours.named_parameters():
        np.testing.assert_allclose(parameter.grad, named[name].grad.numpy(), rtol=0, atol=1e-9, err_msg=name)


def test_vit_trains_with_dropout_and_evaluates_without():
    model = tiny_vit(dropout=0.2)
    kinds = [type(m).__name__ for m in model.modules()]
    assert kinds.count("Dropout") == 2 * 3  # after the attention, the GELU and the MLP, in each of 2 blocks
    x = np.random.default_rng(8).random((16, 1, 8, 8), dtype=np.float32)
    labels = np.arange(16) % 3
    trainer = diynn.Trainer(model, diynn.CrossEntropyLoss(), diynn.AdamW(model.parameters(), lr=3e-3), metric=None)
    losses = [float(trainer.step(x, labels)[0]) for _ in range(30)]
    assert losses[-1] < losses[0]
    model.eval()
    np.testing.assert_array_equal(model(x), model(x))  # no dropout in eval mode


def test_vit_parameters_and_shapes():
    model = diynn.vit(rng=0)  # 28x28 images in 7x7 patches: 16 tokens of 64 features, 4 blocks
    assert model(np.zeros((2, 1, 28, 28), np.float32)).shape == (2, 10)
    e, hidden, length = 64, 128, 16
    block = 2 * 2 * e + (3 * e * e + 3 * e + e * e + e) + (e * hidden + hidden + hidden * e + e)
    expected = (49 * e + e) + length * e + 4 * block + 2 * e + (e * 10 + 10)
    assert sum(p.data.size for p in model.parameters()) == expected
    assert diynn.vit(patch_size=4, pooling="class", rng=0)[4].weight.shape == (1, 50, 64)  # 49 patches + class


def test_bad_arguments_are_named():
    with pytest.raises(ValueError, match="patch_size must divide image_size, got 5 and 28"):
        diynn.vit(patch_size=5)
    with pytest.raises(ValueError, match="unknown pooling 'max'"):
        diynn.vit(pooling="max")
    with pytest.raises(ValueError, match="num_heads must divide embed_dim"):
        diynn.vit(embed_dim=10, num_heads=4)
    with pytest.raises(ValueError, match="mlp_ratio"):
        diynn.encoder_block(8, 2, mlp_ratio=0.05)
