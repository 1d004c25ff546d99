"""Optimiser updates against the formulas written out independently in NumPy float64."""

import re

import numpy as np
import pytest

from diynn import SGD, Adam, AdamW, Parameter

P0 = np.array([0.5, -1.0, 2.0])
GRADS = [np.array([0.1, -0.2, 0.3]), np.array([-0.4, 0.5, 0.0]), np.array([0.2, 0.2, -0.1])]


def run(backend, make, steps=3):
    parameter = Parameter(backend.asarray(P0.copy(), dtype=backend.xp.float64))
    optimizer = make([parameter])
    for grad in GRADS[:steps]:
        parameter.grad = backend.asarray(grad, dtype=backend.xp.float64)
        optimizer.step()
    return backend.to_numpy(parameter.data)


def test_plain_sgd(backend):
    expected = P0 - 0.1 * sum(GRADS)
    np.testing.assert_allclose(run(backend, lambda p: SGD(p, lr=0.1)), expected, rtol=1e-12)


@pytest.mark.parametrize("nesterov", [False, True])
def test_sgd_momentum_and_weight_decay(backend, nesterov):
    lr, mu, wd = 0.1, 0.9, 0.01
    p, buffer = P0.copy(), None
    for g in GRADS:
        g = g + wd * p
        buffer = g.copy() if buffer is None else mu * buffer + g
        p = p - lr * (g + mu * buffer if nesterov else buffer)
    got = run(backend, lambda ps: SGD(ps, lr=lr, momentum=mu, nesterov=nesterov, weight_decay=wd))
    np.testing.assert_allclose(got, p, rtol=1e-12)


def adam_reference(lr, b1, b2, eps, wd, decoupled):
    p, m, v = P0.copy(), np.zeros(3), np.zeros(3)
    for t, g in enumerate(GRADS, start=1):
        if decoupled:
            p = p * (1 - lr * wd)
        else:
            g = g + wd * p
        m = b1 * m + (1 - b1) * g
        v = b2 * v + (1 - b2) * g * g
        p = p - lr * (m / (1 - b1**t)) / (np.sqrt(v / (1 - b2**t)) + eps)
    return p


def test_adam(backend):
    got = run(backend, lambda ps: Adam(ps, lr=0.01, betas=(0.8, 0.99), eps=1e-6, weight_decay=0.1))
    np.testing.assert_allclose(got, adam_reference(0.01, 0.8, 0.99, 1e-6, 0.1, False), rtol=1e-12)


def test_adamw(backend):
    got = run(backend, lambda ps: AdamW(ps, lr=0.01, weight_decay=0.1))
    np.testing.assert_allclose(got, adam_reference(0.01, 0.9, 0.999, 1e-8, 0.1, True), rtol=1e-12)


def test_parameters_without_gradient_are_left_alone(backend):
    parameter = Parameter(backend.asarray(P0.copy()))
    SGD([parameter], lr=0.1).step()
    np.testing.assert_array_equal(backend.to_numpy(parameter.data), P0)


def test_bad_arguments():
    parameter = Parameter(np.zeros(2))
    with pytest.raises(ValueError, match="positive"):
        SGD([parameter], lr=0)
    with pytest.raises(ValueError, match="no parameters"):
        Adam([])
    with pytest.raises(ValueError, match="Nesterov"):
        SGD([parameter], lr=0.1, nesterov=True)


def test_updates_are_in_place(backend):
    parameter = Parameter(backend.asarray(P0, dtype=backend.xp.float32))
    data = parameter.data
    optimizer = Adam([parameter])
    parameter.grad = backend.asarray(GRADS[0], dtype=backend.xp.float32)
    optimizer.step()
    assert parameter.data is data and parameter.data.dtype == backend.xp.float32


@pytest.mark.parametrize(
    "make",
    [lambda ps: SGD(ps, lr=0.1), lambda ps: SGD(ps, lr=0.1, momentum=0.9), Adam, AdamW],
    ids=["sgd", "sgd-momentum", "adam", "adamw"],
)
@pytest.mark.parametrize(
    "grad, error, message",
    [
        (np.ones((2, 300), np.float32), ValueError, "parameter 1's shape (200, 300), got (2, 300)"),
        (np.ones((1, 300), np.float32), ValueError, "parameter 1's shape (200, 300), got (1, 300)"),
        (np.ones((200, 300)), TypeError, "parameter 1's dtype float32, got float64"),
    ],
)
def test_a_gradient_that_does_not_fit_its_parameter_is_a_clear_error(make, grad, error, message):
    # the compiled updates index by the parameter: a smaller gradient was read past its end
    parameters = [Parameter(np.zeros(3, np.float32)), Parameter(np.zeros((200, 300), np.float32))]
    parameters[0].grad, parameters[1].grad = np.ones(3, np.float32), grad
    with pytest.raises(error, match=re.escape(message)):
        make(parameters).step()
