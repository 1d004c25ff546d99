"""Dilated, grouped and depthwise convolutions (Conv2d's dilation= and groups=: the "phases",
"depthwise", "compiled" and "grouped" implementations in diynn/functional/convolution.py, as the
selection picks them) against PyTorch over their geometries, with gradients in float64, saving and
ONNX."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import diynn

torch = pytest.importorskip("torch", reason="the parity tests compare with PyTorch (pip install torch==2.13.0)")


@st.composite
def geometries(draw):
    groups = draw(st.integers(1, 3))
    in_channels, out_channels = groups * draw(st.integers(1, 3)), groups * draw(st.integers(1, 3))
    kernel = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    dilation = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    stride, padding = (
        (draw(st.integers(1, 3)), draw(st.integers(1, 3))),
        (draw(st.integers(0, 2)), draw(st.integers(0, 2))),
    )
    span = [d * (k - 1) + 1 for d, k in zip(dilation, kernel)]
    size = [draw(st.integers(max(1, s - 2 * p), max(1, s - 2 * p) + 6)) for s, p in zip(span, padding)]
    return groups, in_channels, out_channels, kernel, stride, padding, dilation, size


@settings(max_examples=60, deadline=None)
@given(geometry=geometries(), bias=st.booleans(), seed=st.integers(0, 2**16))
def test_grouped_and_dilated_convolutions_match_torch(geometry, bias, seed):
    groups, c_in, c_out, kernel, stride, padding, dilation, size = geometry
    rng = np.random.default_rng(seed)
    ours = diynn.Conv2d(c_in, c_out, kernel, stride, padding, dilation, groups, bias=bias, rng=seed).astype(np.float64)
    theirs = torch.nn.Conv2d(c_in, c_out, kernel, stride, padding, dilation, groups, bias=bias).double()
    theirs.load_state_dict({k: torch.from_numpy(np.asarray(v)) for k, v in ours.state_dict().items()})
    x = rng.standard_normal((2, c_in, *size))
    y = ours(x)
    grad = rng.standard_normal(y.shape)
    tx = torch.from_numpy(x).requires_grad_()
    ty = theirs(tx)
    ty.backward(torch.from_numpy(grad))
    np.testing.assert_allclose(y, ty.detach().numpy(), rtol=0, atol=1e-10)
    np.testing.assert_allclose(ours.backward(grad), tx.grad.numpy(), rtol=0, atol=1e-10)
    np.testing.assert_allclose(ours.weight.grad, theirs.weight.grad.numpy(), rtol=0, atol=1e-10)
    if bias:
        np.testing.assert_allclose(ours.bias.grad, theirs.bias.grad.numpy(), rtol=0, atol=1e-10)


def test_depthwise_and_dilated_gradients(backend):
    x = backend.asarray(np.random.default_rng(0).standard_normal((2, 4, 9, 8)))
    model = diynn.Sequential(
        diynn.Conv2d(4, 4, 3, padding=2, dilation=2, groups=4, rng=0),  # depthwise, dilated
        diynn.Tanh(),
        diynn.Conv2d(4, 6, (3, 2), stride=2, groups=2, rng=1),
    )
    assert diynn.gradcheck(model, x)


def test_grouped_convolutions_save_and_export(tmp_path):
    ort = pytest.importorskip("onnxruntime")
    model = diynn.Sequential(diynn.Conv2d(2, 4, 3, padding=2, dilation=2, groups=2, rng=0), diynn.ReLU()).eval()
    x = np.random.default_rng(1).random((3, 2, 10, 10), dtype=np.float32)
    loaded = diynn.load_model(diynn.save_model(model, tmp_path / "grouped.npz"))
    np.testing.assert_array_equal(loaded.eval()(x), model(x))
    assert loaded[0].groups == 2 and loaded[0].dilation == (2, 2)
    (output,) = ort.InferenceSession(str(diynn.onnx.export(model, tmp_path / "g.onnx", (2, 10, 10)))).run(
        None, {"input": x}
    )
    np.testing.assert_allclose(output, model(x), rtol=0, atol=1e-5)


def test_groups_that_do_not_divide_the_channels_are_named():
    with pytest.raises(ValueError, match=r"groups=2 must divide in_channels \(3\) and out_channels \(4\)"):
        diynn.Conv2d(3, 4, 3, groups=2)
    with pytest.raises(ValueError, match="conv2d: 5 output channels do not split into 2 groups"):
        diynn.functional.conv2d(np.ones((1, 4, 5, 5)), np.ones((5, 2, 3, 3)), groups=2)
    with pytest.raises(ValueError, match="expects size 4 on axis 1"):
        diynn.functional.conv2d(np.ones((1, 3, 5, 5)), np.ones((4, 2, 3, 3)), groups=2)
