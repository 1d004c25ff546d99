"""Convolution, pooling, normalisation, dropout and reshaping layers."""

import numpy as np
import pytest

import diynn
from backends.base import Backend
from diynn import (
    AvgPool2d,
    BatchNorm1d,
    BatchNorm2d,
    Conv2d,
    ConvTranspose2d,
    Dropout,
    Flatten,
    MaxPool2d,
    Unflatten,
    gradcheck,
)

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


POOLS = {
    "max2": lambda: MaxPool2d(2),
    "max3_stride2_pad1": lambda: MaxPool2d(3, stride=2, padding=1),
    "avg2": lambda: AvgPool2d(2),
    "avg_rect": lambda: AvgPool2d((2, 3), stride=1, padding=(1, 1)),
}


@pytest.mark.parametrize("name", POOLS)
def test_pool_gradients(backend, name, numpy_rng):
    assert gradcheck(POOLS[name](), numpy_rng.normal(size=(2, 3, 6, 5)), max_checks=80)


@pytest.mark.parametrize("training", [True, False])
def test_batchnorm_gradients(backend, training, numpy_rng):
    for layer, shape in ((BatchNorm1d(3), (5, 3)), (BatchNorm1d(3), (4, 3, 2)), (BatchNorm2d(3), (4, 3, 2, 3))):
        layer.weight.data = backend.asarray(numpy_rng.normal(size=3).astype(np.float32))
        layer.train(training)
        if not training:
            layer.running_mean = backend.asarray(numpy_rng.normal(size=3).astype(np.float32))
            layer.running_var = backend.asarray(numpy_rng.uniform(0.5, 2, size=3).astype(np.float32))
        assert gradcheck(layer, numpy_rng.normal(size=shape), max_checks=60)


def test_flatten_and_unflatten_gradients(backend, numpy_rng):
    assert gradcheck(diynn.Sequential(Flatten(), Unflatten((3, 4))), numpy_rng.normal(size=(2, 3, 4)))


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


def test_dropout_scales_and_is_identity_in_eval(backend, numpy_rng):
    layer = Dropout(0.25, rng=0)
    x = backend.asarray(np.ones((200, 50), np.float32))
    y = backend.to_numpy(layer(x))
    assert set(np.unique(y)) <= {0.0, np.float32(1 / 0.75)}
    assert (y == 0).mean() == pytest.approx(0.25, abs=0.02)
    grad = backend.to_numpy(layer.backward(backend.asarray(np.full((200, 50), 2.0, np.float32))))
    np.testing.assert_array_equal(grad, 2 * y)  # the same mask scales the gradient
    layer.eval()
    assert layer(x) is x
    with diynn.enable_grad():  # a backward in eval mode
        assert layer(x) is x and layer.backward(x) is x
    with pytest.raises(ValueError, match=r"\[0, 1\)"):
        Dropout(1.0)


def test_batchnorm_running_statistics(backend, numpy_rng):
    layer = BatchNorm2d(2, momentum=0.5)
    x = numpy_rng.normal(loc=3.0, scale=2.0, size=(8, 2, 4, 4)).astype(np.float32)
    layer(backend.asarray(x))
    mean = x.mean(axis=(0, 2, 3))
    var = x.var(axis=(0, 2, 3), ddof=1)
    np.testing.assert_allclose(backend.to_numpy(layer.running_mean), 0.5 * mean, rtol=1e-5)
    np.testing.assert_allclose(backend.to_numpy(layer.running_var), 0.5 + 0.5 * var, rtol=1e-5)
    assert {"running_mean", "running_var", "weight", "bias"} == set(layer.state_dict())


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


def test_dropout_gradients_with_a_fixed_mask(backend, numpy_rng):
    class FixedMaskDropout(Dropout):
        def forward(self, x):
            self.rng = backend.rng(0)  # the same mask on every call, so finite differences apply
            return super().forward(x)

    assert gradcheck(FixedMaskDropout(0.3), numpy_rng.normal(size=(4, 6)))
