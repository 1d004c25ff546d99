"""Models that branch: Residual, Concat, Identity (diynn/layers/containers.py, diynn/functional/
branches.py), the resampling layers (Upsample, AdaptiveAvgPool2d), and the builders resnet() and
unet(): gradients in float64, PyTorch parity (forward, input gradient, every parameter gradient),
saving, ONNX."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import diynn
from diynn import functional as F

torch = pytest.importorskip("torch", reason="the parity tests compare with PyTorch (pip install torch==2.13.0)")
from torch_references import torch_copy  # noqa: E402  (needs torch)

pytestmark = pytest.mark.usefixtures("one_thread")  # small arrays: see conftest.py


def smooth_block(channels, rng):
    """A residual block with smooth activations: finite differences are exact away from ReLU's kink."""
    return diynn.Sequential(
        diynn.Conv2d(channels, channels, 3, padding=1, rng=rng),
        diynn.BatchNorm2d(channels),
        diynn.Tanh(),
        diynn.Conv2d(channels, channels, 3, padding=1, rng=rng),
    )


def images(shape, seed=0):
    return np.random.default_rng(seed).standard_normal(shape)


def test_residual_and_concat_gradients_nested(backend):
    x = backend.asarray(images((3, 2, 6, 6)))  # two channels: the convolutions' general path, as with more
    model = diynn.Sequential(
        diynn.Residual(smooth_block(2, 0)),
        diynn.Tanh(),
        diynn.Concat(
            diynn.Identity(), diynn.Residual(diynn.Conv2d(2, 1, 1, rng=1), diynn.Conv2d(2, 1, 3, padding=1, rng=2))
        ),
        diynn.Sigmoid(),
    )
    assert diynn.gradcheck(model, x, max_checks=60)  # 60 of the input's entries, every parameter's


def test_a_module_shared_by_two_branches_gets_both_gradients(backend):
    shared = diynn.Conv2d(2, 2, 3, padding=1, rng=0)
    model = diynn.Residual(shared, diynn.Sequential(shared, diynn.Tanh()))
    assert len(model.parameters()) == 2  # an optimiser updates the shared weights once
    assert diynn.gradcheck(model, backend.asarray(images((2, 2, 5, 5))))  # every entry


@pytest.mark.parametrize("axis", [1, 2, -1])
def test_concat_hands_each_branch_its_slice(backend, axis):
    model = diynn.Concat(diynn.Tanh(), diynn.Identity(), diynn.Sigmoid(), axis=axis)
    x = backend.asarray(images((2, 3, 4, 5)))
    y = model(x)
    assert y.shape[axis] == 3 * x.shape[axis]
    assert diynn.gradcheck(model, x)


def test_branch_errors_name_the_shapes():
    x = images((2, 4, 6, 6)).astype(np.float32)
    with pytest.raises(ValueError, match=r"block's output \(2, 8, 4, 4\) and the shortcut's \(2, 4, 6, 6\)"):
        diynn.Residual(diynn.Conv2d(4, 8, 3, rng=0))(x)
    with pytest.raises(ValueError, match=r"concat: operand 1 has shape \(2, 8, 4, 4\).*only axis 1 may differ"):
        diynn.Concat(diynn.Identity(), diynn.Conv2d(4, 8, 3, rng=0))(x)
    with pytest.raises(TypeError, match="Concat branch 1 is int, not a Module"):
        diynn.Concat(diynn.Identity(), 3)
    with pytest.raises(ValueError, match="shape"):
        F.add_backward(F.add(x, x)[1], x[:1])
    with pytest.raises(ValueError, match="align_corners applies to bilinear"):
        diynn.Upsample(2, "nearest", align_corners=True)
    with pytest.raises(ValueError, match="scale_factor"):
        diynn.Upsample(0.5)


# -- the resampling layers against PyTorch, over their geometries ------------------------------


def _parity(ours, theirs, x, rng):
    """Forward and input gradient of a parameterless layer against PyTorch's, float64."""
    y = ours(x)
    grad = rng.standard_normal(y.shape)
    tx = torch.from_numpy(x).requires_grad_()
    ty = theirs(tx)
    ty.backward(torch.from_numpy(grad))
    np.testing.assert_allclose(y, ty.detach().numpy(), rtol=0, atol=1e-12)
    np.testing.assert_allclose(ours.backward(grad), tx.grad.numpy(), rtol=0, atol=1e-12)


@settings(max_examples=40, deadline=None)
@given(
    size=st.tuples(st.integers(1, 9), st.integers(1, 9)),
    scale=st.one_of(st.integers(1, 4), st.sampled_from([1.5, 2.5, 1.25])),
    mode=st.sampled_from(["nearest", "bilinear"]),
    corners=st.booleans(),
    seed=st.integers(0, 2**16),
)
def test_upsample_matches_torch(size, scale, mode, corners, seed):
    rng = np.random.default_rng(seed)
    corners = corners and mode == "bilinear"
    x = rng.standard_normal((2, 3, *size))
    theirs = torch.nn.Upsample(scale_factor=scale, mode=mode, align_corners=corners if mode == "bilinear" else None)
    _parity(diynn.Upsample(scale, mode, corners), theirs, x, rng)


@settings(max_examples=40, deadline=None)
@given(size=st.tuples(st.integers(1, 12), st.integers(1, 12)), data=st.data(), seed=st.integers(0, 2**16))
def test_adaptive_avg_pool_matches_torch(size, data, seed):
    output = (data.draw(st.integers(1, size[0])), data.draw(st.integers(1, size[1])))
    rng = np.random.default_rng(seed)
    _parity(
        diynn.AdaptiveAvgPool2d(output), torch.nn.AdaptiveAvgPool2d(output), rng.standard_normal((2, 3, *size)), rng
    )


@settings(max_examples=25, deadline=None)
@given(sizes=st.lists(st.integers(1, 4), min_size=1, max_size=4), axis=st.integers(0, 3), seed=st.integers(0, 2**16))
def test_concat_matches_torch_cat(sizes, axis, seed):
    rng = np.random.default_rng(seed)
    arrays = [rng.standard_normal([s if a == axis else 3 for a in range(4)]) for s in sizes]
    y, cache = F.concat(arrays, axis=axis)
    tensors = [torch.from_numpy(a).requires_grad_() for a in arrays]
    ty = torch.cat(tensors, dim=axis)
    grad = rng.standard_normal(y.shape)
    ty.backward(torch.from_numpy(grad))
    np.testing.assert_array_equal(y, ty.detach().numpy())
    for ours, theirs in zip(F.concat_backward(cache, grad), tensors):
        np.testing.assert_array_equal(ours, theirs.grad.numpy())


def test_resampling_gradients_in_float64(backend):
    x = backend.asarray(images((2, 2, 5, 7)))  # 140 entries: all checked
    for layer in (diynn.Upsample(2, "bilinear"), diynn.Upsample((2, 3)), diynn.AdaptiveAvgPool2d((2, 3))):
        assert diynn.gradcheck(diynn.Sequential(diynn.Tanh(), layer), x)


# -- ResNet and U-Net: every gradient equals PyTorch's -----------------------------------------


def assert_gradients_match(ours, x, seed=1):
    theirs = torch_copy(ours).double()
    theirs.load_state_dict({name: torch.from_numpy(np.asarray(value)) for name, value in ours.state_dict().items()})
    ours.astype(np.float64)
    y = ours(x)
    grad = np.random.default_rng(seed).standard_normal(y.shape)
    ours.zero_grad()
    grad_x = ours.backward(grad)
    tx = torch.from_numpy(x).requires_grad_()
    ty = theirs(tx)
    ty.backward(torch.from_numpy(grad))
    np.testing.assert_allclose(y, ty.detach().numpy(), rtol=0, atol=1e-9)
    np.testing.assert_allclose(grad_x, tx.grad.numpy(), rtol=0, atol=1e-9)
    named = dict(theirs.named_parameters())
    for name, parameter in ours.named_parameters():
        np.testing.assert_allclose(parameter.grad, named[name].grad.numpy(), rtol=0, atol=1e-9, err_msg=name)
    for name, value in ours.state_dict().items():  # the running statistics too
        np.testing.assert_allclose(value, theirs.state_dict()[name].numpy(), rtol=0, atol=1e-9, err_msg=name)


@pytest.mark.parametrize(
    "build, shape",
    [
        (lambda: diynn.resnet(widths=(4, 8), blocks=2, rng=0), (3, 1, 12, 12)),
        (lambda: diynn.unet(channels=(4, 6, 8), rng=0), (2, 1, 12, 12)),
    ],
    ids=["resnet", "unet"],
)
def test_resnet_and_unet_match_torch_to_the_last_gradient(build, shape):
    assert_gradients_match(build(), images(shape))


@pytest.mark.parametrize("suffix", [".npz", ".safetensors"])
def test_branching_models_save_load_and_go_to_torch(tmp_path, suffix):
    safetensors = pytest.importorskip("safetensors.torch") if suffix == ".safetensors" else None
    x = images((4, 1, 28, 28)).astype(np.float32)
    for name, model in (("resnet", diynn.resnet(widths=(4, 8), rng=0)), ("unet", diynn.unet(channels=(4, 8), rng=0))):
        trainer = diynn.Trainer(
            model,
            diynn.MSELoss() if name == "unet" else diynn.CrossEntropyLoss(),
            diynn.Adam(model.parameters()),
            metric=None,
        )
        trainer.step(x, x if name == "unet" else np.arange(4))  # running statistics move away from 0 and 1
        model.eval()
        path = diynn.save_model(model, tmp_path / f"{name}{suffix}")
        loaded = diynn.load_model(path)
        np.testing.assert_array_equal(loaded.eval()(x), model(x))
        if safetensors is not None:
            theirs = torch_copy(model).float().eval()  # whatever default dtype another test left
            theirs.load_state_dict(safetensors.load_file(str(path)))
            np.testing.assert_allclose(theirs(torch.from_numpy(x)).detach().numpy(), model(x), rtol=0, atol=1e-5)


def test_branching_models_export_to_onnx(tmp_path):
    ort = pytest.importorskip("onnxruntime")
    x = images((3, 1, 28, 28)).astype(np.float32)
    models = {
        "resnet": diynn.resnet(widths=(4, 8), rng=0),
        "unet": diynn.unet(channels=(4, 8), rng=0),
        "upsampling": diynn.Sequential(
            diynn.Upsample(2, "bilinear"), diynn.Upsample(1.5), diynn.Conv2d(1, 2, 3, rng=0)
        ),
    }
    for name, model in models.items():
        model.eval()
        path = diynn.onnx.export(model, tmp_path / f"{name}.onnx", (1, 28, 28))
        (output,) = ort.InferenceSession(str(path)).run(None, {"input": x})
        np.testing.assert_allclose(output, model(x), rtol=0, atol=1e-5, err_msg=name)
    with pytest.raises(ValueError, match="output_size \\[2, 2\\] cannot be exported"):
        diynn.onnx.export(
            diynn.Sequential(diynn.Conv2d(1, 2, 3, rng=0), diynn.AdaptiveAvgPool2d(2)), tmp_path / "m.onnx", (1, 8, 8)
        )
