"""Every functional backward refuses an output gradient of another shape or dtype with an error that
names both, on both kernel paths: the compiled kernels index by the output's shape, so such a
gradient used to be read past its end (a wrong answer or a corrupted heap) or broadcast silently."""

import re

import numpy as np
import pytest

from diynn import backends
from diynn import functional as F

X = (4, 8, 10, 10)  # 8 channels: the 3x3 stride-1 convolution runs Winograd on the compiled path


def _weights(rng, *shape):
    return rng.standard_normal(shape).astype(np.float32)


def _gamma_beta_mean_var():
    ones, zeros = np.ones(8, np.float32), np.zeros(8, np.float32)
    return ones, zeros, zeros.copy(), ones.copy()


OPS = {  # name: (forward of (x, rng) -> (y, cache), backward, input shape)
    "conv2d": (lambda x, r: F.conv2d(x, _weights(r, 6, 8, 4, 4), None, 2, 1), F.conv2d_backward, X),
    "conv2d winograd": (lambda x, r: F.conv2d(x, _weights(r, 6, 8, 3, 3), _weights(r, 6), 1, 1), F.conv2d_backward, X),
    "conv2d one channel": (lambda x, r: F.conv2d(x[:, :1], _weights(r, 3, 1, 3, 3)), F.conv2d_backward, X),
    "conv_transpose2d": (
        lambda x, r: F.conv_transpose2d(x, _weights(r, 8, 6, 3, 3), None, 2, 1),
        F.conv_transpose2d_backward,
        X,
    ),
    "max_pool2d 2x2": (lambda x, r: F.max_pool2d(x, 2), F.max_pool2d_backward, X),
    "max_pool2d 3x3": (lambda x, r: F.max_pool2d(x, 3, 2, 1), F.max_pool2d_backward, X),
    "avg_pool2d": (lambda x, r: F.avg_pool2d(x, 2), F.avg_pool2d_backward, X),
    "batch_norm": (lambda x, r: F.batch_norm(x, *_gamma_beta_mean_var()), F.batch_norm_backward, X),
    "linear": (lambda x, r: F.linear(x, _weights(r, 5, 12), _weights(r, 5)), F.linear_backward, (16, 12)),
    "relu": (lambda x, r: F.relu(x), F.relu_backward, X),
    "leaky_relu": (lambda x, r: F.leaky_relu(x), F.leaky_relu_backward, X),
    "tanh": (lambda x, r: F.tanh(x), F.tanh_backward, X),
    "sigmoid": (lambda x, r: F.sigmoid(x), F.sigmoid_backward, X),
    "softmax": (lambda x, r: F.softmax(x, 1), F.softmax_backward, (16, 12)),
    "dropout": (lambda x, r: F.dropout(x, 0.5, backends.get("numpy").rng(0)), F.dropout_backward, X),
}


@pytest.fixture(params=["compiled", "portable"])
def kernels(request):
    before = backends.kernels()
    backends.set_kernels(request.param)
    yield request.param
    backends.set_kernels(before)


@pytest.mark.parametrize("name", OPS)
def test_a_gradient_of_the_output_s_shape_and_dtype_is_taken(name, kernels, numpy_rng):
    forward, backward, shape = OPS[name]
    y, cache = forward(numpy_rng.standard_normal(shape).astype(np.float32), numpy_rng)
    grads = backward(cache, np.ones(y.shape, np.float32))
    for grad in grads if isinstance(grads, tuple) else (grads,):
        assert grad is None or grad.dtype == np.float32


@pytest.mark.parametrize("name", OPS)
@pytest.mark.parametrize("wrong", ["reversed axes", "half the batch", "float64", "a list"])
def test_another_gradient_is_a_clear_error(name, wrong, kernels, numpy_rng):
    forward, backward, shape = OPS[name]
    y, cache = forward(numpy_rng.standard_normal(shape).astype(np.float32), numpy_rng)
    expected = f"the output's shape {tuple(y.shape)}"
    if wrong == "reversed axes":
        grad = np.ones(y.shape[::-1], np.float32)
    elif wrong == "half the batch":
        grad = np.ones((y.shape[0] // 2, *y.shape[1:]), np.float32)
    elif wrong == "float64":
        grad, expected = np.ones(y.shape), "the output's dtype float32, got float64"
    else:
        grad, expected = np.ones(y.shape).tolist(), "as an array, got list"
    error = TypeError if wrong in ("float64", "a list") else ValueError
    with pytest.raises(error, match=re.escape(expected)):
        backward(cache, grad)
