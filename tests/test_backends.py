import subprocess
import sys

import numpy as np
import pytest

import backends
from backends import BackendError
from backends.base import Backend


def test_unknown_name_lists_valid_names():
    with pytest.raises(BackendError, match="unknown backend 'nope'.*numpy, cupy, array_api_strict"):
        backends.set_backend("nope")


def test_cupy_without_gpu_is_an_error_not_a_fallback():
    if "cupy" in _names():
        pytest.skip("a GPU is present")
    with pytest.raises(BackendError, match="cupy"):
        backends.set_backend("cupy")
    assert backends.get_backend().name == "numpy"


def test_environment_variable_chooses_the_backend():
    code = "import backends; print(backends.get_backend().name)"
    env = {"DIYNN_BACKEND": "array_api_strict", "PATH": ""}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "array_api_strict"


def test_use_restores_the_previous_backend():
    before = backends.get_backend()
    with backends.use("array_api_strict") as active:
        assert backends.get_backend() is active
        assert active.name == "array_api_strict"
    assert backends.get_backend() is before


def test_round_trip_to_numpy(backend):
    values = np.arange(12, dtype=np.float32).reshape(3, 4)
    array = backend.asarray(values)
    assert array.dtype == backend.xp.float32
    np.testing.assert_array_equal(backend.to_numpy(array), values)


def test_rng_is_seeded_and_backend_independent(backend):
    first = backend.to_numpy(backend.rng(7).normal((5, 3)))
    second = backend.to_numpy(backend.rng(7).normal((5, 3)))
    np.testing.assert_array_equal(first, second)
    assert first.dtype == np.float32
    other = backend.to_numpy(backend.rng(8).normal((5, 3)))
    assert not np.array_equal(first, other)
    permutation = backend.to_numpy(backend.rng(3).permutation(10))
    assert sorted(permutation.tolist()) == list(range(10))


@pytest.mark.parametrize("use_fallback", [False, True])
def test_scatter_add_sums_repeated_indices(backend, use_fallback):
    xp = backend.xp
    target = xp.zeros((4, 2), dtype=xp.float32)
    indices = backend.asarray(np.array([0, 2, 2, 3, 0]))
    values = backend.asarray(np.arange(10, dtype=np.float32).reshape(5, 2))
    scatter = Backend.scatter_add.__get__(backend) if use_fallback else backend.scatter_add
    scatter(target, indices, values)
    expected = np.zeros((4, 2), np.float32)
    np.add.at(expected, [0, 2, 2, 3, 0], np.arange(10, dtype=np.float32).reshape(5, 2))
    np.testing.assert_array_equal(backend.to_numpy(target), expected)


def _names():
    from conftest import AVAILABLE

    return AVAILABLE


def test_fused_adam_matches_the_portable_fallback(backend, numpy_rng):
    """The backend's own adam_update (fused on NumPy and CuPy) against the generic code."""
    arrays = {name: numpy_rng.normal(size=(7, 5)).astype(np.float32) for name in ("param", "grad", "m")}
    arrays["v"] = numpy_rng.uniform(size=(7, 5)).astype(np.float32)
    results = []
    for update in (backend.adam_update, Backend.adam_update.__get__(backend)):
        state = {name: backend.asarray(array.copy()) for name, array in arrays.items()}
        for step in (1, 2, 3):
            update(
                state["param"],
                state["grad"],
                state["m"],
                state["v"],
                lr=0.01,
                beta1=0.9,
                beta2=0.99,
                eps=1e-6,
                step=step,
            )
        results.append({name: backend.to_numpy(value) for name, value in state.items()})
    for name in ("param", "m", "v"):
        np.testing.assert_allclose(results[0][name], results[1][name], rtol=2e-6, atol=1e-7, err_msg=name)
    assert not np.allclose(results[0]["param"], arrays["param"])


def test_cupy_backend_module_imports_without_cupy():
    """The GPU code path must stay importable (and lint-clean) on CPU-only machines."""
    import backends.cupy_backend as cupy_backend

    assert cupy_backend.CupyBackend.name == "cupy"
    assert callable(cupy_backend.CupyBackend.adam_update)


@pytest.mark.parametrize("name", ["relu_backward", "tanh_backward", "sigmoid_backward"])
def test_activation_backward_matches_the_portable_fallback(backend, numpy_rng, name):
    y = backend.asarray(np.tanh(numpy_rng.normal(size=(9, 4))).astype(np.float32))
    grad_output = backend.asarray(numpy_rng.normal(size=(9, 4)).astype(np.float32))
    fused = backend.to_numpy(getattr(backend, name)(y, grad_output))
    portable = backend.to_numpy(getattr(Backend, name)(backend, y, grad_output))
    np.testing.assert_allclose(fused, portable, rtol=1e-6, atol=1e-7)


def test_softmax_cross_entropy_matches_the_portable_fallback(backend, numpy_rng):
    logits = backend.asarray((numpy_rng.normal(size=(40, 10)) * 20).astype(np.float32))
    labels = backend.asarray(numpy_rng.integers(0, 10, 40))
    (loss, grad), (expected_loss, expected_grad) = (
        backend.softmax_cross_entropy(logits, labels),
        Backend.softmax_cross_entropy(backend, logits, labels),
    )
    np.testing.assert_allclose(backend.to_numpy(loss), backend.to_numpy(expected_loss), rtol=1e-5)
    np.testing.assert_allclose(backend.to_numpy(grad), backend.to_numpy(expected_grad), rtol=1e-5, atol=1e-7)
    bad = backend.asarray(np.array([0] * 39 + [10]))
    if backend.name == "cupy":  # the fused kernel cannot raise without a synchronisation: NaN
        assert np.isnan(backend.to_numpy(backend.softmax_cross_entropy(logits, bad)[0]))
    else:
        with pytest.raises(ValueError, match="labels must be in"):
            backend.softmax_cross_entropy(logits, bad)


@pytest.mark.parametrize(("momentum", "nesterov"), [(0.0, False), (0.9, False), (0.9, True)])
def test_sgd_update_matches_the_portable_fallback(backend, numpy_rng, momentum, nesterov):
    arrays = [numpy_rng.normal(size=(7, 5)).astype(np.float32) for _ in range(3)]
    results = []
    for update in (backend.sgd_update, Backend.sgd_update.__get__(backend)):
        param, grad, buffer = (backend.asarray(array.copy()) for array in arrays)
        for _ in range(3):
            update(
                param,
                grad,
                buffer if momentum else None,
                lr=0.1,
                momentum=momentum,
                nesterov=nesterov,
                weight_decay=0.01,
            )
        results.append((backend.to_numpy(param), backend.to_numpy(buffer)))
    np.testing.assert_allclose(results[0][0], results[1][0], rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(results[0][1], results[1][1], rtol=1e-6, atol=1e-7)
    assert not np.allclose(results[0][0], arrays[0])
