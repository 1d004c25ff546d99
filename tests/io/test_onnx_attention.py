"""ONNX export of MultiheadAttention (diynn/io/onnx.py): its products as MatMul, Reshape, Transpose
and Softmax, its masks (graph inputs) as Where and Add, checked with onnx.checker and run with
onnxruntime against diynn's outputs (skipped where onnx or onnxruntime is absent)."""

import numpy as np
import pytest

import diynn

onnx = pytest.importorskip("onnx", reason='ONNX export needs onnx (pip install -e ".[onnx]")')
onnxruntime = pytest.importorskip("onnxruntime", reason='the ONNX tests need onnxruntime (pip install -e ".[onnx]")')

LENGTH, EMBED = 5, 8


def attention_model(bias=True):
    """Two attention layers, with biases that are not 0 (so that a misplaced one shows)."""
    rng = np.random.default_rng(0)
    model = diynn.Sequential(
        diynn.MultiheadAttention(EMBED, 2, dropout=0.2, bias=bias, rng=0),
        diynn.MultiheadAttention(EMBED, 4, bias=bias, rng=1),
    )
    for parameter in model.parameters():
        if parameter.data.ndim == 1:
            parameter.data = rng.normal(size=parameter.data.shape).astype(np.float32)
    return model.eval()


def run(path, inputs):
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    (output,) = session.run(None, inputs)
    return output


def ours(model, x, **masks):
    with diynn.no_grad():
        for layer in model.layers:
            x = layer(x, **masks)
    return x


def operators(path):
    return {node.op_type for node in onnx.load(path).graph.node}


@pytest.mark.parametrize("bias", [True, False])
def test_onnxruntime_computes_what_diynn_computes(tmp_path, bias):
    model = attention_model(bias)
    path = diynn.onnx.export(model, tmp_path / "attention.onnx", (LENGTH, EMBED))
    onnx.checker.check_model(onnx.load(path), full_check=True)
    assert operators(path) <= {"MatMul", "Add", "Mul", "Reshape", "Transpose", "Softmax"}
    x = np.random.default_rng(1).normal(size=(16, LENGTH, EMBED)).astype(np.float32)
    np.testing.assert_allclose(run(path, {"input": x}), diynn.predict(model, x), rtol=1e-5, atol=1e-5)


MASKS = {
    "bool": {"key_padding_mask": "bool", "attn_mask": "bool"},
    "float": {"key_padding_mask": "float", "attn_mask": "float"},
    "mixed": {"attn_mask": "float", "key_padding_mask": "bool"},
    "causal": {"attn_mask": "bool"},
}


@pytest.mark.parametrize("name", MASKS)
def test_masks_are_graph_inputs(tmp_path, name):
    kinds = MASKS[name]
    model = attention_model()
    path = diynn.onnx.export(model, tmp_path / "masked.onnx", (LENGTH, EMBED), masks=kinds)
    onnx.checker.check_model(onnx.load(path), full_check=True)
    assert [i.name for i in onnx.load(path).graph.input] == ["input", *kinds]
    rng = np.random.default_rng(2)
    batch = 8
    x = rng.normal(size=(batch, LENGTH, EMBED)).astype(np.float32)
    padding = rng.random((batch, LENGTH)) < 0.3
    padding[0] = True  # sequence 0 attends to nothing: its weights are 0 in both
    if name == "causal":
        attention = np.triu(np.ones((LENGTH, LENGTH), bool), 1)
    else:
        attention = rng.random((LENGTH, LENGTH)) < 0.3
    masks = {"key_padding_mask": padding, "attn_mask": attention}
    masks = {
        key: masks[key] if kind == "bool" else np.where(masks[key], -np.inf, rng.normal(size=masks[key].shape))
        for key, kind in kinds.items()
    }
    masks = {key: mask if mask.dtype == bool else mask.astype(np.float32) for key, mask in masks.items()}
    expected = ours(model, x, **masks)
    assert np.all(np.isfinite(expected))
    np.testing.assert_allclose(run(path, {"input": x, **masks}), expected, rtol=1e-5, atol=1e-5)
    if kinds.get("attn_mask") == "bool" or kinds.get("key_padding_mask") == "bool":
        assert "Where" in operators(path)


def test_what_cannot_be_exported_is_named(tmp_path):
    with pytest.raises(ValueError, match="batch_first=False cannot be exported"):
        diynn.onnx.export(diynn.MultiheadAttention(4, 2, batch_first=False, rng=0), tmp_path / "m.onnx", (3, 4))
    with pytest.raises(ValueError, match="masks names key_padding_mask, attn_mask, each 'bool' or 'float'"):
        diynn.onnx.export(attention_model(), tmp_path / "m.onnx", (LENGTH, EMBED), masks={"mask": "bool"})
    assert not (tmp_path / "m.onnx").exists()
