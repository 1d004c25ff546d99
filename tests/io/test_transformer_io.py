"""The transformer's building blocks saved and exported: LayerNorm, GELU, SiLU and Embedding (with
Linear and Dropout on (N, L, features)) through model files, and through ONNX run in onnxruntime."""

import numpy as np
import pytest

import diynn


def token_model():
    """Token ids (N, 6) -> (N, 6, 8): the layers of a transformer's embedding and feed-forward block."""
    model = diynn.Sequential(
        diynn.Embedding(20, 8, padding_idx=0, rng=0),
        diynn.LayerNorm(8),
        diynn.Linear(8, 16, rng=1),
        diynn.GELU(),
        diynn.Dropout(0.1, rng=2),
        diynn.Linear(16, 12, rng=3),
        diynn.GELU("tanh"),
        diynn.SiLU(),
        diynn.Linear(12, 8, bias=False, rng=4),
        diynn.LayerNorm((6, 8), eps=1e-3, bias=False),
    )
    _randomise_norms(model)
    return model


def feature_model():
    """Features (N, 3, 4) -> (N, 3, 5), with a LayerNorm without parameters over two axes."""
    model = diynn.Sequential(
        diynn.LayerNorm((3, 4), elementwise_affine=False),
        diynn.Linear(4, 5, rng=0),
        diynn.SiLU(),
        diynn.LayerNorm(5),
    )
    _randomise_norms(model)
    return model


def _randomise_norms(model):
    rng = np.random.default_rng(7)
    for layer in model:
        if isinstance(layer, diynn.LayerNorm):
            for parameter in layer.parameters():
                parameter.data = rng.standard_normal(parameter.data.shape).astype(np.float32)


MODELS = {
    "tokens": (token_model, (6,), lambda rng: rng.integers(0, 20, (9, 6))),
    "features": (feature_model, (3, 4), lambda rng: rng.standard_normal((9, 3, 4)).astype(np.float32)),
}


@pytest.mark.parametrize("name", MODELS)
@pytest.mark.parametrize("suffix", ["npz", "safetensors"])
def test_saved_and_loaded_models_compute_the_same(tmp_path, name, suffix):
    if suffix == "safetensors":
        pytest.importorskip("safetensors")
    make, _, inputs = MODELS[name]
    model = make().eval()
    loaded = diynn.load_model(diynn.save_model(model, tmp_path / f"{name}.{suffix}")).eval()
    assert repr(loaded) == repr(model)
    x = inputs(np.random.default_rng(0))
    np.testing.assert_array_equal(loaded(x), model(x))


@pytest.mark.parametrize("name", MODELS)
def test_onnxruntime_computes_what_diynn_computes(tmp_path, name):
    onnx = pytest.importorskip("onnx", reason='ONNX export needs onnx (pip install -e ".[onnx]")')
    onnxruntime = pytest.importorskip(
        "onnxruntime", reason='the ONNX tests need onnxruntime (pip install -e ".[onnx]")'
    )
    make, shape, inputs = MODELS[name]
    model = make()
    path = diynn.onnx.export(model, tmp_path / f"{name}.onnx", shape)
    operators = {node.op_type for node in onnx.load(path).graph.node}
    assert "Gemm" not in operators and "MatMul" in operators and "LayerNormalization" in operators
    x = inputs(np.random.default_rng(1))
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    (theirs,) = session.run(None, {"input": x})
    assert model.training  # export ran the model in eval mode and left its mode as it was
    with diynn.no_grad():
        ours = model.eval()(x)  # not diynn.predict: it converts the input to the model's dtype, token ids too
    np.testing.assert_allclose(theirs, ours, rtol=1e-5, atol=1e-5)
