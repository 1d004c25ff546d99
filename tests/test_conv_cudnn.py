"""The cuDNN path of the convolutions (CuPy), checked for its glue without a GPU: the layers run
on NumPy with `backend.library("cudnn")` answering a stand-in for cupyx.cudnn whose three routines
are written here independently (sliding windows and einsum, cuDNN's argument conventions), and must
give what the portable im2col path gives. On a GPU, test_conv_layers.py runs the real cuDNN."""

import numpy as np
import pytest
from conftest import AVAILABLE

import diynn


def _windows(x, kernel, stride, padding):
    (kh, kw), (sh, sw), (ph, pw) = kernel, stride, padding
    padded = np.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw)))
    return np.lib.stride_tricks.sliding_window_view(padded, (kh, kw), axis=(2, 3))[:, :, ::sh, ::sw]


class StandInCudnn:
    """cupyx.cudnn.convolution_forward / _backward_filter / _backward_data for NCHW arrays, with the
    same positional arguments (pad, stride, dilation, groups) and results written into the output."""

    def __init__(self):
        self.calls = []

    def convolution_forward(self, x, W, b, y, pad, stride, dilation, groups, *, auto_tune, tensor_core):
        self._check(y, dilation, groups)
        self.calls.append("forward")
        y[...] = np.einsum("nchwij,ocij->nohw", _windows(x, W.shape[2:], stride, pad), W)
        if b is not None:
            y += b[None, :, None, None]

    def convolution_backward_filter(self, x, gy, gW, pad, stride, dilation, groups, **options):
        self._check(gW, dilation, groups)
        self.calls.append("backward_filter")
        gW[...] = np.einsum("nchwij,nohw->ocij", _windows(x, gW.shape[2:], stride, pad), gy)

    def convolution_backward_data(self, W, x, b, y, pad, stride, dilation, groups, **options):
        """y (the forward convolution's input shape) = the input gradient of a convolution with
        filter W (K, C, kh, kw) whose output gradient is x (N, K, OH, OW)."""
        self._check(y, dilation, groups)
        self.calls.append("backward_data")
        (kh, kw), (sh, sw), (ph, pw) = W.shape[2:], stride, pad
        n, channels, height, width = y.shape
        full = np.zeros((n, channels, height + 2 * ph, width + 2 * pw), y.dtype)
        oh, ow = x.shape[2:]
        for i in range(kh):
            for j in range(kw):
                full[:, :, i : i + sh * (oh - 1) + 1 : sh, j : j + sw * (ow - 1) + 1 : sw] += np.einsum(
                    "nohw,oc->nchw", x, W[:, :, i, j]
                )
        y[...] = full[:, :, ph : ph + height, pw : pw + width]
        if b is not None:
            y += b[None, :, None, None]

    @staticmethod
    def _check(output, dilation, groups):
        assert output.flags.c_contiguous and dilation == (1, 1) and groups == 1


@pytest.fixture
def cudnn(monkeypatch):
    stand_in = StandInCudnn()
    with diynn.use("numpy") as backend:
        monkeypatch.setattr(backend, "library", lambda name: stand_in if name == "cudnn" else None)
        yield stand_in


def _run(make, x, seed=0):
    """forward, then backward with a random output gradient: (y, dx, dW, db) as float64 arrays."""
    layer = make()
    y = layer(x)
    grad = np.random.default_rng(seed).normal(size=y.shape).astype(x.dtype)
    dx = layer.backward(grad)
    return [np.asarray(a, np.float64) for a in (y, dx, layer.weight.grad, layer.bias.grad)]


CASES = {
    "conv 3x3 pad 1": (lambda: diynn.Conv2d(3, 4, 3, padding=1, rng=0), (2, 3, 7, 6)),
    "conv 4x4 stride 2": (lambda: diynn.Conv2d(3, 5, 4, stride=2, padding=1, rng=0), (2, 3, 8, 8)),
    "conv 2x3 stride (2, 1)": (lambda: diynn.Conv2d(2, 3, (2, 3), stride=(2, 1), rng=0), (3, 2, 7, 5)),
    "transposed 4x4 stride 2": (lambda: diynn.ConvTranspose2d(3, 2, 4, stride=2, padding=1, rng=0), (2, 3, 4, 5)),
    "transposed output padding": (
        lambda: diynn.ConvTranspose2d(2, 3, 3, stride=2, padding=1, output_padding=1, rng=0),
        (2, 2, 3, 4),
    ),
}


@pytest.mark.parametrize("case", list(CASES))
def test_cudnn_path_matches_the_portable_path(cudnn, case):
    make, shape = CASES[case]
    x = np.random.default_rng(1).normal(size=shape)
    with_cudnn = _run(lambda: make().astype(np.float64), x)
    assert sorted(set(cudnn.calls)) == ["backward_data", "backward_filter", "forward"]
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(diynn.get_backend(), "library", lambda name: None)
        portable = _run(lambda: make().astype(np.float64), x)
    for name, ours, expected in zip(("y", "dx", "dW", "db"), with_cudnn, portable):
        np.testing.assert_allclose(ours, expected, rtol=1e-10, atol=1e-12, err_msg=name)


def test_cudnn_path_skips_the_input_gradient_of_a_first_layer(cudnn):
    layer = diynn.Conv2d(1, 2, 3, rng=0)
    y = layer(np.ones((1, 1, 5, 5), np.float32))
    assert layer.backward(np.ones_like(y), input_grad=False) is None
    assert cudnn.calls == ["forward", "backward_filter"]


@pytest.mark.skipif("cupy" not in AVAILABLE, reason="needs CuPy and a CUDA GPU")
@pytest.mark.parametrize("case", list(CASES))
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_real_cudnn_matches_the_im2col_path_on_the_gpu(case, dtype):
    make, shape = CASES[case]
    with diynn.use("cupy") as backend:
        if backend.library("cudnn") is None:  # CuPy 14 removed its cuDNN bindings: im2col is the path
            pytest.skip("this CuPy has no cuDNN bindings (CuPy 14 removed them); convolutions use im2col")
        x = backend.asarray(np.random.default_rng(1).normal(size=shape).astype(dtype))

        def run():
            layer = make().astype(getattr(backend.xp, dtype))
            y = layer(x)
            dx = layer.backward(backend.asarray(np.random.default_rng(0).normal(size=y.shape).astype(dtype)))
            return [backend.to_numpy(a) for a in (y, dx, layer.weight.grad, layer.bias.grad)]

        with_cudnn = run()
        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(backend, "library", lambda name: None)
            portable = run()
    tolerance = {"rtol": 1e-4, "atol": 1e-5} if dtype == "float32" else {"rtol": 1e-10, "atol": 1e-12}
    for name, ours, expected in zip(("y", "dx", "dW", "db"), with_cudnn, portable):
        np.testing.assert_allclose(ours, expected, **tolerance, err_msg=name)
