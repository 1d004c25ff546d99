"""ONNX export (diynn/io/onnx.py): checked with onnx.checker and run with onnxruntime against diynn's
own outputs on 64 random inputs (skipped where onnx or onnxruntime is absent)."""

import numpy as np
import pytest

import diynn

onnx = pytest.importorskip("onnx", reason='ONNX export needs onnx (pip install -e ".[onnx]")')
onnxruntime = pytest.importorskip("onnxruntime", reason='the ONNX tests need onnxruntime (pip install -e ".[onnx]")')


def every_layer():
    """A model using every exportable layer, with batch norm statistics that are not the defaults."""
    model = diynn.Sequential(
        diynn.Conv2d(1, 4, 3, stride=1, padding=1, rng=0),
        diynn.BatchNorm2d(4),
        diynn.LeakyReLU(0.1),
        diynn.MaxPool2d(3, stride=2, padding=1),
        diynn.AvgPool2d(2, stride=1, padding=1),
        diynn.ConvTranspose2d(4, 3, 3, stride=2, padding=1, output_padding=1, rng=1),
        diynn.Tanh(),
        diynn.Flatten(),
        diynn.Unflatten((3, 10, 10)),  # (N, 3, 10, 10) again
        diynn.Flatten(),
        diynn.Linear(300, 12, rng=2),
        diynn.BatchNorm1d(12),
        diynn.Unflatten((3, 4)),
        diynn.Conv1d(3, 2, 3, padding=1, rng=3),
        diynn.MaxPool1d(2),
        diynn.Flatten(),
        diynn.Dropout(0.5, rng=4),
        diynn.Sigmoid(),
        diynn.Linear(4, 3, bias=False, rng=5),
        diynn.ReLU(),
        diynn.Softmax(),
    )
    model(np.random.default_rng(0).random((16, 1, 8, 8), dtype=np.float32))  # moves the running statistics
    return model


MODELS = {
    "mlp": (lambda: diynn.mlp([784, 32, 10], rng=0), (784,)),
    "cnn": (lambda: diynn.cnn(rng=0), (1, 28, 28)),
    "conv_autoencoder": (lambda: diynn.conv_autoencoder(8, rng=0), (1, 28, 28)),
    "every_layer": (every_layer, (1, 8, 8)),
}


@pytest.mark.parametrize("name", MODELS)
def test_onnxruntime_computes_what_diynn_computes(name, tmp_path):
    make, shape = MODELS[name]
    model = make().eval()
    path = diynn.onnx.export(model, tmp_path / f"{name}.onnx", shape)
    onnx.checker.check_model(onnx.load(path), full_check=True)
    x = np.random.default_rng(1).random((64, *shape), dtype=np.float32)
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    (theirs,) = session.run(None, {"input": x})
    np.testing.assert_allclose(theirs, diynn.predict(model, x), rtol=1e-5, atol=1e-5)


def test_a_layer_without_an_onnx_operator_is_named(tmp_path):
    class Doubler(diynn.Module):
        def forward(self, x):
            return 2 * x

    model = diynn.Sequential(diynn.Linear(3, 2, rng=0), Doubler())
    with pytest.raises(ValueError, match="Doubler cannot be exported to ONNX; exportable layers: "):
        diynn.onnx.export(model, tmp_path / "m.onnx", (3,))
    assert not (tmp_path / "m.onnx").exists()
    with pytest.raises(ValueError, match="input_shape must be one sample's shape"):
        diynn.onnx.export(diynn.mlp([3, 2], rng=0), tmp_path / "m.onnx", 3)
