"""Convolutions (diynn/layers/convolution.py, diynn/functional/convolution.py) and the im2col they use."""

import numpy as np
import pytest

import diynn
from diynn import (
    BatchNorm1d,
    BatchNorm2d,
    Conv2d,
    ConvTranspose2d,
    Flatten,
    MaxPool2d,
    gradcheck,
)
from diynn import functional as F
from diynn.backends.base import Backend

CONVS = {
    "3x3": dict(kernel_size=3),
    "stride2_pad1": dict(kernel_size=3, stride=2, padding=1),
    "rect_kernel": dict(kernel_size=(2, 3), stride=(1, 2), padding=(1, 0)),
    "1x1_no_bias": dict(kernel_size=1, bias=False),
}


@pytest.mark.parametrize("in_channels", [2, 1], ids=["channel_major", "one_channel_batch_major"])
@pytest.mark.parametrize("name", CONVS)
def test_conv2d_gradients(backend, name, in_channels, numpy_rng):
    layer = Conv2d(in_channels, 3, rng=0, **CONVS[name])
    assert gradcheck(layer, numpy_rng.normal(size=(2, in_channels, 5, 7)), max_checks=60)


TRANSPOSED = {
    "k3": dict(kernel_size=3),
    "stride2": dict(kernel_size=3, stride=2, padding=1, output_padding=1),
    "rect": dict(kernel_size=(2, 3), stride=(2, 1), padding=(0, 1)),
}


@pytest.mark.parametrize("name", TRANSPOSED)
def test_conv_transpose2d_gradients(backend, name, numpy_rng):
    layer = ConvTranspose2d(2, 3, rng=0, **TRANSPOSED[name])
    assert gradcheck(layer, numpy_rng.normal(size=(2, 2, 4, 3)), max_checks=60)


def test_small_cnn_gradients(backend, numpy_rng):
    model = diynn.Sequential(
        Conv2d(1, 2, 3, padding=1, rng=0),
        BatchNorm2d(2),
        diynn.ReLU(),
        MaxPool2d(2),
        Flatten(),
        diynn.Linear(2 * 3 * 3, 3, rng=1),
    )
    assert gradcheck(model, numpy_rng.normal(size=(3, 1, 6, 6)), max_checks=50)


@pytest.mark.parametrize("stride", [1, 2])
def test_im2col_fast_path_matches_fallback(backend, stride, numpy_rng):
    x = backend.asarray(numpy_rng.normal(size=(3, 2, 7, 6)).astype(np.float32))
    fast = backend.im2col(x, (3, 2), (stride, stride))
    portable = Backend.im2col(backend, x, (3, 2), (stride, stride))
    np.testing.assert_array_equal(backend.to_numpy(fast), backend.to_numpy(portable))


def test_col2im_is_the_adjoint_of_im2col(backend, numpy_rng):
    """<im2col(x), c> == <x, col2im(c)> for any x, c: the two are transposes of each other."""
    shape, kernel, stride = (2, 3, 7, 6), (3, 2), (2, 1)
    x = numpy_rng.normal(size=shape)
    cols = backend.im2col(backend.asarray(x), kernel, stride)
    c = numpy_rng.normal(size=tuple(cols.shape))
    back = backend.col2im(backend.asarray(c), shape, kernel, stride)
    assert np.sum(backend.to_numpy(cols) * c) == pytest.approx(np.sum(x * backend.to_numpy(back)), rel=1e-10)


def test_shape_errors(backend):
    conv = Conv2d(3, 4, 3)
    with pytest.raises(ValueError, match="4 axes"):
        conv(backend.asarray(np.zeros((2, 3, 5), np.float32)))
    with pytest.raises(ValueError, match=r"size 3 on axis 1, got shape \(2, 1, 5, 5\)"):
        conv(backend.asarray(np.zeros((2, 1, 5, 5), np.float32)))
    with pytest.raises(ValueError, match="smaller than the kernel"):
        conv(backend.asarray(np.zeros((2, 3, 2, 5), np.float32)))
    with pytest.raises(ValueError, match="smaller than the kernel"):
        MaxPool2d(4)(backend.asarray(np.zeros((1, 1, 3, 3), np.float32)))
    with pytest.raises(ValueError, match="2 or 3 axes"):
        BatchNorm1d(3)(backend.asarray(np.zeros((2, 3, 4, 4), np.float32)))
    with pytest.raises(ValueError, match="more than one value per channel"):
        BatchNorm1d(3)(backend.asarray(np.zeros((1, 3), np.float32)))
    with pytest.raises(ValueError, match="output_padding"):
        ConvTranspose2d(1, 1, 3, stride=2, output_padding=2)
    x, weight = (backend.asarray(np.zeros(shape, np.float32)) for shape in [(1, 1, 3, 3), (1, 1, 3, 3)])
    with pytest.raises(ValueError, match=r"output_padding \(2, 2\) must be smaller than stride \(2, 2\)"):
        F.conv_transpose2d(x, weight, stride=2, output_padding=2)  # the functional op checks it too


@pytest.mark.parametrize("op, weight_shape", [(F.conv2d, (4, 3, 3, 3)), (F.conv_transpose2d, (3, 4, 3, 3))])
def test_functional_convolutions_reject_operands_that_do_not_fit(backend, op, weight_shape):
    """The compiled kernels would read past such operands: each is a clear error on every path."""
    x, weight = (backend.asarray(np.zeros(shape, np.float32)) for shape in ((2, 3, 6, 6), weight_shape))
    with pytest.raises(ValueError, match=r"size 3 on axis 1, got shape \(2, 2, 6, 6\)"):
        op(backend.asarray(np.zeros((2, 2, 6, 6), np.float32)), weight)
    with pytest.raises(TypeError, match=r"expects dtype \S*float32 .* got \S*float64"):
        op(backend.asarray(np.zeros((2, 3, 6, 6), np.float64)), weight)
    with pytest.raises(ValueError, match=r"bias expects size 4 on axis 0, got shape \(3,\)"):
        op(x, weight, backend.asarray(np.zeros(3, np.float32)))
    with pytest.raises(ValueError, match="weight expects an input with 4 axes"):
        op(x, backend.asarray(np.zeros((4, 3, 3), np.float32)))


@pytest.mark.parametrize(
    "make",
    [lambda: diynn.Conv1d(2, 3, 3, stride=2, padding=1, rng=0), lambda: diynn.MaxPool1d(2)],
    ids=["conv1d", "maxpool1d"],
)
def test_one_dimensional_layers(backend, make, numpy_rng, tmp_path):
    layer = make()
    rebuilt = diynn.load_model(diynn.save_model(diynn.Sequential(layer), tmp_path / "m.npz"))
    x = backend.asarray(numpy_rng.normal(size=(2, 2, 7)).astype(np.float32))
    np.testing.assert_array_equal(backend.to_numpy(rebuilt(x)), backend.to_numpy(layer(x)))
    assert gradcheck(layer, numpy_rng.normal(size=(2, 2, 7)), max_checks=60)
