import subprocess
import sys

import numpy as np
import pytest

import diynn
from diynn import backends
from diynn.backends import BackendError


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
    code = "from diynn import backends; print(backends.get_backend().name)"
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


def _names():
    from conftest import AVAILABLE

    return AVAILABLE


def test_cupy_backend_module_imports_without_cupy():
    """The GPU code path must stay importable (and lint-clean) on CPU-only machines."""
    import diynn.backends.cupy_backend as cupy_backend

    assert cupy_backend.CupyBackend.name == "cupy"
    assert callable(cupy_backend.CupyBackend.elementwise)


def test_backends_know_nothing_of_neural_networks():
    """backends/ is the generic shim: no layer, loss or optimiser formula lives there."""
    import re
    from pathlib import Path

    words = re.compile(r"relu|tanh|sigmoid|softmax|entropy|adam|sgd|embedding|attention|gelu|trainer", re.IGNORECASE)
    for path in sorted((Path(backends.__file__).parent).glob("*.py")):
        assert not words.search(path.read_text()), f"{path.name} names a neural-network op"


def test_backend_of_an_array(backend):
    assert backends.backend_of(backend.asarray(np.zeros(3, np.float32))) is backend
    with pytest.raises(TypeError, match="expected an array.*got list"):
        backends.backend_of([1.0, 2.0])


def _without_fused_kernels(backend, function):
    """function() with backend.elementwise switched off: the ops' portable array code."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(backend, "elementwise", lambda source: None)
        return function()


@pytest.mark.parametrize("name", ["relu", "tanh", "sigmoid"])
def test_activation_backward_matches_the_portable_code(backend, numpy_rng, name):
    from diynn.functional import activations

    function = getattr(activations, f"{name}_backward")
    y = backend.asarray(np.tanh(numpy_rng.normal(size=(9, 4))).astype(np.float32))
    grad_output = backend.asarray(numpy_rng.normal(size=(9, 4)).astype(np.float32))
    fused = backend.to_numpy(function(y, grad_output))
    portable = backend.to_numpy(_without_fused_kernels(backend, lambda: function(y, grad_output)))
    np.testing.assert_allclose(fused, portable, rtol=1e-6, atol=1e-7)


def test_softmax_cross_entropy_matches_the_portable_code(backend, numpy_rng):
    from diynn.functional.losses import softmax_cross_entropy

    logits = backend.asarray((numpy_rng.normal(size=(40, 10)) * 20).astype(np.float32))
    labels = backend.asarray(numpy_rng.integers(0, 10, 40))
    (loss, grad), (expected_loss, expected_grad) = (
        softmax_cross_entropy(logits, labels),
        _without_fused_kernels(backend, lambda: softmax_cross_entropy(logits, labels)),
    )
    np.testing.assert_allclose(backend.to_numpy(loss), backend.to_numpy(expected_loss), rtol=1e-5)
    np.testing.assert_allclose(backend.to_numpy(grad), backend.to_numpy(expected_grad), rtol=1e-5, atol=1e-7)
    bad = backend.asarray(np.array([0] * 39 + [10]))
    if backend.name == "cupy":  # the fused kernel cannot raise without a synchronisation: NaN
        assert np.isnan(backend.to_numpy(softmax_cross_entropy(logits, bad)[0]))
    else:
        with pytest.raises(ValueError, match="labels must be in"):
            softmax_cross_entropy(logits, bad)


@pytest.mark.parametrize(
    "make",
    [
        lambda ps: diynn.SGD(ps, lr=0.1, weight_decay=0.01),
        lambda ps: diynn.SGD(ps, lr=0.1, momentum=0.9, weight_decay=0.01),
        lambda ps: diynn.SGD(ps, lr=0.1, momentum=0.9, nesterov=True, weight_decay=0.01),
        lambda ps: diynn.Adam(ps, lr=0.01, betas=(0.9, 0.99), eps=1e-6),
        lambda ps: diynn.AdamW(ps, lr=0.01),
    ],
    ids=["sgd", "momentum", "nesterov", "adam", "adamw"],
)
def test_optimiser_step_matches_the_portable_code(backend, numpy_rng, make):
    start = numpy_rng.normal(size=(7, 5)).astype(np.float32)
    grads = [numpy_rng.normal(size=(7, 5)).astype(np.float32) for _ in range(3)]

    def train():
        parameter = diynn.Parameter(backend.asarray(start.copy()))
        optimizer = make([parameter])
        for grad in grads:
            parameter.grad = backend.asarray(grad)
            optimizer.step()
        return backend.to_numpy(parameter.data)

    fused, portable = train(), _without_fused_kernels(backend, train)
    np.testing.assert_allclose(fused, portable, rtol=2e-6, atol=1e-7)
    assert not np.allclose(fused, start)


def test_host_memory_keeps_freed_pages_on_glibc_unless_told_not_to(monkeypatch):
    from diynn.backends import host_memory

    monkeypatch.setenv("DIYNN_KEEP_FREED_MEMORY", "0")
    assert host_memory.keep_freed_memory() is False
    monkeypatch.delenv("DIYNN_KEEP_FREED_MEMORY")
    monkeypatch.setenv("MALLOC_TOP_PAD_", "0")  # the user's own setting wins
    assert host_memory.keep_freed_memory() is False
    monkeypatch.delenv("MALLOC_TOP_PAD_")
    import platform

    expected = sys.platform.startswith("linux") and platform.libc_ver()[0] == "glibc"
    assert host_memory.keep_freed_memory() is expected
