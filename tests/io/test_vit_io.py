"""diynn.vit() saved and exported: model files (.npz and .safetensors) rebuilt from the config, the
weights exchanged through .safetensors with the same network written in PyTorch (torch's own
TransformerEncoderLayer blocks, tests/torch_references.py's TorchViT) both ways, and the ONNX graph
run in onnxruntime; each within 1e-5 of diynn's logits. Skipped where a package is missing."""

import numpy as np
import pytest

import diynn

POOLINGS = ["mean", "class"]
SETTINGS = dict(image_size=28, patch_size=7, embed_dim=16, depth=2, num_heads=4, mlp_ratio=2, classes=10)


def trained_vit(pooling):
    """A small vit after two AdamW steps: every parameter away from its initial ones and zeros."""
    model = diynn.vit(**SETTINGS, pooling=pooling, rng=0)
    trainer = diynn.Trainer(model, diynn.CrossEntropyLoss(), diynn.AdamW(model.parameters(), lr=1e-2), metric=None)
    for _ in range(2):
        trainer.step(images(0), np.arange(8) % 10)
    return model.eval()


def images(seed, n=8):
    return np.random.default_rng(seed).random((n, 1, 28, 28), dtype=np.float32)


@pytest.mark.parametrize("pooling", POOLINGS)
@pytest.mark.parametrize("suffix", [".npz", ".safetensors"])
def test_saved_and_loaded_vit_computes_the_same(tmp_path, pooling, suffix):
    if suffix == ".safetensors":
        pytest.importorskip("safetensors")
    model = trained_vit(pooling)
    loaded = diynn.load_model(diynn.save_model(model, tmp_path / f"vit{suffix}")).eval()
    assert repr(loaded) == repr(model)
    np.testing.assert_array_equal(loaded(images(1)), model(images(1)))


def torch_vit(torch, pooling):
    from torch_references import TorchViT

    hidden = SETTINGS["mlp_ratio"] * SETTINGS["embed_dim"]
    options = {key: SETTINGS[key] for key in ("image_size", "patch_size", "embed_dim", "depth", "num_heads", "classes")}
    return TorchViT(**options, hidden=hidden, pooling=pooling).float().eval()  # float32 whatever the default


@pytest.mark.parametrize("pooling", POOLINGS)
def test_diynn_weights_run_in_torchs_vit(tmp_path, pooling):
    torch = pytest.importorskip("torch")
    safetensors = pytest.importorskip("safetensors.torch")
    from torch_references import vit_names

    model = trained_vit(pooling)
    names = vit_names(SETTINGS["depth"], pooling)
    weights = safetensors.load_file(str(diynn.save_model(model, tmp_path / "vit.safetensors")))
    theirs = torch_vit(torch, pooling)
    theirs.load_state_dict({names[name]: value for name, value in weights.items()})  # strict: all, no others
    with torch.no_grad():
        logits = theirs(torch.from_numpy(images(2))).numpy()
    np.testing.assert_allclose(diynn.predict(model, images(2)), logits, rtol=0, atol=1e-5)


@pytest.mark.parametrize("pooling", POOLINGS)
def test_torchs_vit_weights_load_into_diynn(tmp_path, pooling):
    torch = pytest.importorskip("torch")
    safetensors = pytest.importorskip("safetensors.torch")
    from torch_references import vit_names

    torch.manual_seed(0)
    theirs = torch_vit(torch, pooling)
    with torch.no_grad():  # the class token and position embeddings start at zero in TorchViT
        for name, parameter in theirs.named_parameters():
            if name in ("class_token", "pos_embedding"):
                parameter.normal_(std=0.5)
    ours_by_theirs = {theirs_name: ours for ours, theirs_name in vit_names(SETTINGS["depth"], pooling).items()}
    renamed = {ours_by_theirs[name]: value.contiguous() for name, value in theirs.state_dict().items()}
    safetensors.save_file(renamed, str(tmp_path / "torch.safetensors"))
    model = diynn.load_weights(diynn.vit(**SETTINGS, pooling=pooling, rng=1), tmp_path / "torch.safetensors")
    with torch.no_grad():
        logits = theirs(torch.from_numpy(images(3))).numpy()
    np.testing.assert_allclose(diynn.predict(model, images(3)), logits, rtol=0, atol=1e-5)


@pytest.mark.parametrize("pooling", POOLINGS)
def test_onnxruntime_computes_what_diynn_computes(tmp_path, pooling):
    onnx = pytest.importorskip("onnx", reason='ONNX export needs onnx (pip install -e ".[onnx]")')
    onnxruntime = pytest.importorskip(
        "onnxruntime", reason='the ONNX tests need onnxruntime (pip install -e ".[onnx]")'
    )
    model = trained_vit(pooling)
    path = diynn.onnx.export(model, tmp_path / "vit.onnx", (1, 28, 28))
    operators = {node.op_type for node in onnx.load(path).graph.node}
    assert {"Conv", "Reshape", "Transpose", "LayerNormalization", "Softmax", "Erf"} <= operators
    assert ("Concat" in operators) == (pooling == "class")
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    (theirs,) = session.run(None, {"input": images(4, n=5)})  # a batch size of its own: the axis is dynamic
    np.testing.assert_allclose(theirs, model(images(4, n=5)), rtol=0, atol=1e-5)


def test_a_flatten_onnx_cannot_express_is_refused(tmp_path):
    pytest.importorskip("onnx")
    model = diynn.Sequential(diynn.Conv2d(1, 2, 3, rng=0), diynn.Flatten(1, 2))
    with pytest.raises(ValueError, match=r"Flatten\(start_dim=1, end_dim=2\) cannot be exported to ONNX"):
        diynn.onnx.export(model, tmp_path / "m.onnx", (1, 6, 6))
