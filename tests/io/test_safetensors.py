"""Model files as .safetensors (diynn/io/safetensors_file.py, diynn/io/model_files.py) and the weights exchange
with PyTorch: diynn's CNN into the matching torch.nn.Sequential and back (skipped without
safetensors, or without torch for the exchange)."""

import numpy as np
import pytest

import diynn
from diynn import ModelFileError

pytest.importorskip("safetensors", reason='.safetensors files need safetensors (pip install -e ".[safetensors]")')


def torch_cnn(torch):
    """diynn.cnn()'s network in PyTorch, layer for layer (the same indices, so the same names)."""
    nn = torch.nn
    return nn.Sequential(
        nn.Conv2d(1, 32, 3, padding=1, bias=False), nn.MaxPool2d(2), nn.BatchNorm2d(32), nn.ReLU(),
        nn.Conv2d(32, 64, 3, padding=1, bias=False), nn.MaxPool2d(2), nn.BatchNorm2d(64), nn.ReLU(),
        nn.Flatten(), nn.Linear(3136, 128), nn.ReLU(), nn.Dropout(0.5), nn.Linear(128, 10),
    ).float()  # float32 whatever the default dtype (another test module sets float64)  # fmt: skip


def images(seed, n=32):
    return np.random.default_rng(seed).random((n, 1, 28, 28), dtype=np.float32)


def test_diynn_weights_load_into_pytorch(tmp_path):
    torch = pytest.importorskip("torch")
    from safetensors.torch import load_file

    model = diynn.cnn(rng=0)
    model(images(0))  # training-mode forward: running statistics away from their defaults
    path = diynn.save_model(model.eval(), tmp_path / "cnn.safetensors")
    theirs = torch_cnn(torch)
    theirs.load_state_dict(load_file(path))
    x = images(1)
    with torch.no_grad():
        logits = theirs.eval()(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(diynn.predict(model, x), logits, rtol=1e-5, atol=1e-5)


def test_pytorch_weights_load_into_diynn(tmp_path):
    torch = pytest.importorskip("torch")
    from safetensors.torch import save_file

    torch.manual_seed(0)
    theirs = torch_cnn(torch)
    theirs(torch.from_numpy(images(2)))  # training-mode forward: running statistics move
    save_file(theirs.state_dict(), tmp_path / "torch.safetensors")
    model = diynn.load_weights(diynn.cnn(rng=1), tmp_path / "torch.safetensors")
    x = images(3)
    with torch.no_grad():
        logits = theirs.eval()(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(diynn.predict(model, x), logits, rtol=1e-5, atol=1e-5)
    with pytest.raises(ModelFileError, match="holds weights but no diynn architecture"):
        diynn.load_model(tmp_path / "torch.safetensors")


def test_a_safetensors_model_file_round_trips(tmp_path):
    model = diynn.conv_autoencoder(8, rng=0)
    loaded = diynn.load_model(diynn.save_model(model, tmp_path / "ae.safetensors"))
    x = images(4, n=4)
    np.testing.assert_array_equal(diynn.predict(loaded, x), diynn.predict(model, x))


def test_bad_safetensors_files_are_named(tmp_path):
    path = diynn.save_model(diynn.mlp([3, 2], rng=0), tmp_path / "m.safetensors")
    (tmp_path / "cut.safetensors").write_bytes(path.read_bytes()[:-5])
    with pytest.raises(ModelFileError, match="cut.safetensors is not a readable .safetensors file"):
        diynn.load_model(tmp_path / "cut.safetensors")
    (tmp_path / "noise.safetensors").write_bytes(b"\x00" * 64)
    with pytest.raises(ModelFileError, match="noise.safetensors is not a readable"):
        diynn.load_weights(diynn.mlp([3, 2], rng=0), tmp_path / "noise.safetensors")
    with pytest.raises(ModelFileError, match=r"'0.weight' has shape \(2, 3\), the model expects \(2, 4\)"):
        diynn.load_weights(diynn.mlp([4, 2], rng=0), path)
