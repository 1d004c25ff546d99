"""diynn.compare_with_torch (diynn/inspection/torch_comparison.py, torch_copy.py): correct models
agree with their PyTorch copies in float64 to the last gradient, a wrong backward is found at its
layer, unknown layers and losses are refused clearly, the model is left untouched, and diynn never
needs PyTorch to be imported (the comparison tests are skipped without it)."""

import importlib.util
import subprocess
import sys

import numpy as np
import pytest

import diynn

needs_torch = pytest.mark.skipif(importlib.util.find_spec("torch") is None, reason="compares with PyTorch")


def images(shape, seed=0):
    return np.random.default_rng(seed).standard_normal(shape).astype(np.float32)


def zoo():
    """Every mapped layer once, with groups, dilation, padding, bilinear and fractional upsampling."""
    return diynn.Sequential(
        diynn.Conv2d(2, 4, 3, padding=2, dilation=2, groups=2, rng=0),
        diynn.BatchNorm2d(4),
        diynn.LeakyReLU(0.1),
        diynn.AvgPool2d(2, padding=1),
        diynn.Upsample(2, "bilinear"),
        diynn.Upsample(1.5),
        diynn.MaxPool2d(3, stride=2, padding=1),
        diynn.Concat(diynn.Identity(), diynn.ConvTranspose2d(4, 2, 3, padding=1, rng=1)),
        diynn.Tanh(),
        diynn.AdaptiveAvgPool2d(2),
        diynn.Flatten(),
        diynn.BatchNorm1d(24),
        diynn.Dropout(0.5, rng=0),
        diynn.Linear(24, 12, rng=2),
        diynn.Unflatten((3, 4)),
        diynn.Softmax(),
        diynn.Flatten(),
        diynn.Sigmoid(),
    )


def one_dimensional():
    return diynn.Sequential(
        diynn.Conv1d(2, 3, 3, padding=1, rng=0), diynn.MaxPool1d(2), diynn.Flatten(), diynn.Linear(12, 4, rng=1)
    )


def tokens_model():
    """The transformer's layers on token ids: Embedding (padding row), LayerNorm, self-attention with
    dropout (compared in eval mode), both GELUs, SiLU, the mean of the tokens."""
    return diynn.Sequential(
        diynn.Embedding(10, 8, padding_idx=0, rng=0),
        diynn.LayerNorm(8),
        diynn.MultiheadAttention(8, 2, dropout=0.1, rng=1),
        diynn.GELU(),
        diynn.SiLU(),
        diynn.GELU("tanh"),
        diynn.TokenPool(),
        diynn.Linear(8, 3, rng=2),
    )


labels = np.array([1, 0, 2, 1])
CASES = {
    "mlp": (lambda: diynn.mlp([6, 8, 3], dropout=0.3, rng=0), images((4, 6)), labels, diynn.CrossEntropyLoss()),
    "cnn": (lambda: diynn.cnn(channels=(3, 4), hidden=8, image_size=12, rng=0), images((4, 1, 12, 12)), None, None),
    "conv_autoencoder": (
        lambda: diynn.conv_autoencoder(5, channels=(3, 4), image_size=8, noise_std=0.2, rng=0),
        np.abs(images((3, 1, 8, 8))),
        None,
        None,
    ),
    "resnet": (lambda: diynn.resnet(widths=(3, 4), rng=0), images((4, 1, 8, 8)), labels, diynn.CrossEntropyLoss(0.1)),
    "unet": (
        lambda: diynn.unet(channels=(3, 4, 5), rng=0),
        images((2, 1, 8, 8)),
        np.random.default_rng(1).uniform(size=(2, 1, 8, 8)),
        diynn.BCELoss(),
    ),
    "zoo": (zoo, images((4, 2, 6, 6)), images((4, 12), 1) > 0, diynn.BCEWithLogitsLoss()),
    "one_dimensional": (one_dimensional, images((3, 2, 8)), images((3, 4), 2), diynn.MSELoss()),
    "tokens": (tokens_model, np.random.default_rng(0).integers(0, 10, (4, 5)), labels, diynn.CrossEntropyLoss()),
    "vit": (
        lambda: diynn.vit(8, 4, classes=3, embed_dim=8, depth=2, num_heads=2, dropout=0.1, pooling="class", rng=0),
        images((4, 1, 8, 8)),
        labels,
        diynn.CrossEntropyLoss(0.1),
    ),
}


@needs_torch
@pytest.mark.parametrize("name", CASES)
def test_a_correct_model_agrees_everywhere(name):
    build, x, y, loss = CASES[name]
    model = build()
    y = None if y is None else y.astype(np.float32) if y.dtype == bool else y
    comparison = diynn.compare_with_torch(model, x, y, loss)
    assert comparison.first_disagreement is None, str(comparison)
    assert comparison.agrees and 0 < comparison.max_error < 1e-9
    compared = {row.path for row in comparison.rows}
    expected = {path for path, _ in named_modules(model)} | ({"loss"} if loss is not None else set())
    assert compared == expected
    # token ids have no input gradient
    assert all(row.errors["output"] < 1e-9 and row.errors.get("input gradient", 0) < 1e-9 for row in comparison.rows)
    assert "all layers agree" in str(comparison)


def named_modules(module, path=""):
    yield path, module
    if isinstance(module, diynn.MultiheadAttention):  # compared whole: torch runs out_proj inside it
        return
    for name, child in module._modules.items():
        yield from named_modules(child, f"{path}.{name}" if path else name)


@needs_torch
def test_parameter_gradients_and_running_statistics_are_compared():
    model = diynn.Sequential(diynn.Linear(3, 4, rng=0), diynn.BatchNorm1d(4), diynn.Tanh())
    comparison = diynn.compare_with_torch(model, images((5, 3)))
    rows = {row.path: row for row in comparison.rows}
    assert set(rows["0"].errors) == {"output", "input gradient", "gradient of weight", "gradient of bias"}
    assert {"running_mean", "running_var", "gradient of weight"} <= set(rows["1"].errors)


@needs_torch
def test_the_model_is_left_untouched():
    model = diynn.cnn(channels=(3, 4), hidden=8, image_size=12, rng=0)
    x = images((4, 1, 12, 12))
    model(x)  # a forward waiting for its backward
    model[11].eval()
    state = {key: value.copy() for key, value in model.state_dict().items()}
    modes = [m.training for m in model.modules()]
    stream = model[11].rng.state_dict()
    diynn.compare_with_torch(model, x, labels, diynn.CrossEntropyLoss())
    assert [m.training for m in model.modules()] == modes and model[11].rng.state_dict() == stream
    for key, value in model.state_dict().items():
        assert value.dtype == np.float32
        np.testing.assert_array_equal(value, state[key], err_msg=key)
    assert all(p.grad is None for p in model.parameters())
    assert model.backward(np.ones((4, 10), dtype=np.float32)).shape == x.shape  # its pending forward is there


class Square(diynn.Module):
    """y = x^2, with a backward that forgets the 2 when `wrong`."""

    def __init__(self, wrong=False):
        super().__init__()
        self.wrong = wrong

    def forward(self, x):
        self.save_for_backward(x)
        return x * x

    def backward(self, grad_output, input_grad=True):
        x = self.saved_for_backward()
        return grad_output * x if self.wrong else 2 * x * grad_output


def torch_square(module):
    import torch

    class TorchSquare(torch.nn.Module):
        def forward(self, x):
            return x * x

    return TorchSquare()


def with_square(wrong):
    return diynn.Sequential(
        diynn.Linear(4, 5, rng=0), diynn.Tanh(), Square(wrong), diynn.Linear(5, 3, rng=1), diynn.Sigmoid()
    )


@needs_torch
def test_a_layer_of_ones_own_joins_with_modules():
    comparison = diynn.compare_with_torch(with_square(False), images((6, 4)), modules={Square: torch_square})
    assert comparison.agrees and comparison.max_error < 1e-9


@needs_torch
def test_a_wrong_backward_is_the_first_disagreement_at_its_layer():
    comparison = diynn.compare_with_torch(with_square(True), images((6, 4)), modules={Square: torch_square})
    first = comparison.first_disagreement
    assert (first.path, first.layer, first.what) == ("2", "Square", ("input gradient",))
    assert first.error > 1e-3 and comparison.max_error >= first.error
    rows = {row.path: row for row in comparison.rows}
    assert rows["3"].disagreeing == () and rows["2"].errors["output"] < 1e-12
    assert "input gradient" in rows["0"].disagreeing  # spoilt downstream, but not the first
    text = str(comparison)
    assert "<- first disagreement" in next(line for line in text.splitlines() if "Square" in line)
    assert "first disagreement: 2 (Square): input gradient" in text


@needs_torch
def test_a_wrong_forward_is_found_by_its_output():
    import torch

    comparison = diynn.compare_with_torch(
        with_square(False), images((6, 4)), modules={Square: lambda module: torch.nn.Tanh()}
    )
    first = comparison.first_disagreement
    assert (first.path, first.layer, first.what) == ("2", "Square", ("output",))


@needs_torch
def test_unknown_layers_and_losses_are_refused_clearly():
    with pytest.raises(TypeError, match=r"no PyTorch counterpart for Square \(at '2'\).*modules=\{Square: factory\}"):
        diynn.compare_with_torch(with_square(False), images((6, 4)))
    with pytest.raises(TypeError, match="no PyTorch counterpart for the loss NTXentLoss"):
        diynn.compare_with_torch(diynn.Linear(4, 3), images((6, 4)), loss=diynn.NTXentLoss())
    with pytest.raises(ValueError, match="needs a target: pass y"):
        diynn.compare_with_torch(diynn.Linear(4, 3), images((6, 4)), loss=diynn.MSELoss())
    with pytest.raises(ValueError, match="pass loss="):
        diynn.compare_with_torch(diynn.Linear(4, 3), images((6, 4)), y=images((6, 3)))


@needs_torch
def test_frozen_and_shared_layers(backend):
    shared = diynn.Conv2d(2, 2, 3, padding=1, rng=0)
    model = diynn.Sequential(
        diynn.Conv2d(2, 2, 1, rng=1).requires_grad_(False),
        diynn.Residual(shared, diynn.Sequential(shared, diynn.Tanh())),
        diynn.Sigmoid(),
    )
    comparison = diynn.compare_with_torch(model, images((2, 2, 5, 5)))
    assert comparison.agrees and comparison.max_error < 1e-9, str(comparison)
    rows = {row.path: row for row in comparison.rows}
    assert "gradient of weight" not in rows["0"].errors  # frozen on both sides: no gradients
    assert {"1.block", "1.block #2"} <= set(rows)


@pytest.mark.slow  # a float64 gradcheck or sweep of seconds; the full suite runs it
def test_diynn_does_not_import_torch():
    code = "import sys, diynn; diynn.summary(diynn.mlp([3, 2]), 3); assert 'torch' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)


def test_without_torch_the_error_says_how_to_install_it(monkeypatch):
    monkeypatch.setitem(sys.modules, "torch", None)  # `import torch` raises ImportError
    with pytest.raises(ImportError, match="pip install torch"):
        diynn.compare_with_torch(diynn.Linear(3, 2), images((2, 3)))
