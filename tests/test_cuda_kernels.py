"""The CuPy backend's fused kernels against the portable code, with no GPU needed: each kernel
body runs on the CPU through tests/cuda_emulator.py (compiled with g++), in float32 and float64.
On a GPU machine test_backends.py also runs the real kernels against the same fallbacks."""

import shutil
import sys
from types import SimpleNamespace

import numpy as np
import pytest
from cuda_emulator import Emulator

from backends import cuda_kernels, use
from backends.base import Backend

pytestmark = pytest.mark.skipif(shutil.which("g++") is None, reason="needs g++ to compile the kernel bodies")

DTYPES = [np.float32, np.float64]


@pytest.fixture(scope="module")
def emulator(tmp_path_factory):
    return Emulator(tmp_path_factory.mktemp("kernels"))


@pytest.fixture
def portable():
    """The base class's portable fallbacks, run on NumPy."""
    with use("numpy") as backend:
        yield lambda name: getattr(Backend, name).__get__(backend)


def _tolerance(dtype):
    return {"rtol": 1e-5, "atol": 1e-6} if dtype == np.float32 else {"rtol": 1e-12, "atol": 1e-14}


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize(
    ("kernel", "fallback", "forward"),
    [
        (cuda_kernels.RELU_BACKWARD, "relu_backward", lambda x: np.maximum(x, 0)),
        (cuda_kernels.TANH_BACKWARD, "tanh_backward", np.tanh),
        (cuda_kernels.SIGMOID_BACKWARD, "sigmoid_backward", lambda x: 1 / (1 + np.exp(-x))),
    ],
)
def test_activation_backward(emulator, portable, numpy_rng, dtype, kernel, fallback, forward):
    y = forward(numpy_rng.normal(size=(33, 7))).astype(dtype)
    grad_output = numpy_rng.normal(size=(33, 7)).astype(dtype)
    result = np.full_like(y, np.nan)
    emulator.run(kernel, y, grad_output, result)
    np.testing.assert_allclose(result, portable(fallback)(y, grad_output), **_tolerance(dtype))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("label_dtype", [np.int64, np.int32])
def test_softmax_cross_entropy(emulator, portable, numpy_rng, dtype, label_dtype):
    logits = (numpy_rng.normal(size=(50, 10)) * 30).astype(dtype)  # large logits: needs the max shift
    labels = numpy_rng.integers(0, 10, 50).astype(label_dtype)
    losses, grad = np.full(50, np.nan, dtype), np.full_like(logits, np.nan)
    emulator.run(cuda_kernels.SOFTMAX_CROSS_ENTROPY, logits, labels, 10, 1 / 50, losses, grad)
    expected_loss, expected_grad = portable("softmax_cross_entropy")(logits, labels)
    np.testing.assert_allclose(losses.mean(), expected_loss, **_tolerance(dtype))
    np.testing.assert_allclose(grad, expected_grad, **_tolerance(dtype))


def test_softmax_cross_entropy_marks_a_bad_label(emulator, portable):
    logits = np.zeros((3, 4), np.float32)
    labels = np.array([1, 4, -1])
    losses, grad = np.zeros(3, np.float32), np.zeros_like(logits)
    emulator.run(cuda_kernels.SOFTMAX_CROSS_ENTROPY, logits, labels, 4, 1 / 3, losses, grad)
    np.testing.assert_allclose(losses[0], np.log(4), rtol=1e-6)
    assert np.isnan(losses[1:]).all() and np.isnan(grad[1:]).all() and np.isfinite(grad[0]).all()
    with pytest.raises(ValueError, match=r"labels must be in \[0, 4\) for 4 logits, got 4"):
        portable("softmax_cross_entropy")(logits, labels)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize(
    ("momentum", "nesterov", "weight_decay"),
    [(0.0, False, 0.0), (0.0, False, 0.1), (0.9, False, 0.0), (0.9, True, 0.01)],
)
def test_sgd(emulator, portable, numpy_rng, dtype, momentum, nesterov, weight_decay):
    param, grad, buffer = (numpy_rng.normal(size=(6, 5)).astype(dtype) for _ in range(3))
    expected_param, expected_buffer = param.copy(), buffer.copy()
    portable("sgd_update")(
        expected_param,
        grad,
        expected_buffer if momentum else None,
        lr=0.05,
        momentum=momentum,
        nesterov=nesterov,
        weight_decay=weight_decay,
    )
    if momentum:
        emulator.run(cuda_kernels.SGD_MOMENTUM, grad, 0.05, momentum, weight_decay, int(nesterov), param, buffer)
        np.testing.assert_allclose(buffer, expected_buffer, **_tolerance(dtype))
    else:
        emulator.run(cuda_kernels.SGD, grad, 0.05, weight_decay, param)
    np.testing.assert_allclose(param, expected_param, **_tolerance(dtype))


@pytest.mark.parametrize("dtype", DTYPES)
def test_adam(emulator, portable, numpy_rng, dtype):
    param, grad, m = (numpy_rng.normal(size=(6, 5)).astype(dtype) for _ in range(3))
    v = numpy_rng.uniform(size=(6, 5)).astype(dtype)
    expected = [array.copy() for array in (param, m, v)]
    lr, beta1, beta2, eps, step = 0.01, 0.9, 0.99, 1e-6, 3
    portable("adam_update")(*expected[:1], grad, *expected[1:], lr=lr, beta1=beta1, beta2=beta2, eps=eps, step=step)
    c = (1 - beta2**step) ** 0.5
    emulator.run(cuda_kernels.ADAM, grad, lr * c / (1 - beta1**step), beta1, beta2, eps * c, param, m, v)
    for name, result, wanted in zip(("param", "m", "v"), (param, m, v), expected):
        np.testing.assert_allclose(result, wanted, **_tolerance(dtype), err_msg=name)


def test_a_broken_body_fails_to_compile(emulator):
    broken = cuda_kernels.Elementwise("T x", "T y", "y = undefined_function(x)", "broken")
    with pytest.raises(AssertionError, match="does not compile"):
        emulator.run(broken, np.zeros(3, np.float32), np.zeros(3, np.float32))


KERNELS = [value for value in vars(cuda_kernels).values() if isinstance(value, cuda_kernels.Elementwise)]


@pytest.mark.skipif(shutil.which("nvcc") is None, reason="needs nvcc (the CUDA compiler; no GPU needed)")
@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("kernel", KERNELS, ids=[kernel.name for kernel in KERNELS])
def test_kernel_compiles_as_cuda(emulator, kernel, dtype):
    """The device side: CUDA's own math overloads (exp, max, ...) and types, checked by nvcc."""
    emulator.compile_for_gpu(kernel, {"T": dtype, "L": "int64"})


@pytest.fixture
def cupy_backend_on_the_cpu(monkeypatch, emulator):
    """CupyBackend's methods with a stand-in `cupy` whose ElementwiseKernel runs on the emulator:
    checks the host-side glue (argument order, scalars, output allocation) without a GPU."""
    import array_api_compat.numpy

    import backends.cupy_backend as cupy_backend

    class Kernel:
        def __init__(self, in_params, out_params, operation, name):
            self.source = cuda_kernels.Elementwise(in_params, out_params, operation, name)
            self.inputs, self.outputs = len(in_params.split(",")), len(out_params.split(","))

        def __call__(self, *arguments):
            if len(arguments) > self.inputs:
                return emulator.run(self.source, *arguments)
            like = next(value for value in arguments if isinstance(value, np.ndarray))
            outputs = [np.empty_like(like) for _ in range(self.outputs)]
            emulator.run(self.source, *arguments, *outputs)
            return outputs[0] if self.outputs == 1 else tuple(outputs)

    fake = SimpleNamespace(
        ElementwiseKernel=Kernel,
        ascontiguousarray=np.ascontiguousarray,
        empty=np.empty,
        empty_like=np.empty_like,
        mean=np.mean,
    )
    monkeypatch.setitem(sys.modules, "cupy", fake)
    monkeypatch.setattr(cupy_backend, "_kernels", {})
    backend = object.__new__(cupy_backend.CupyBackend)
    backend._cupy, backend.xp = fake, array_api_compat.numpy
    return backend


@pytest.mark.parametrize("name", ["relu_backward", "tanh_backward", "sigmoid_backward"])
def test_cupy_backend_activation_backward(cupy_backend_on_the_cpu, portable, numpy_rng, name):
    y, grad_output = (np.tanh(numpy_rng.normal(size=(5, 6))).astype(np.float32) for _ in range(2))
    result = getattr(cupy_backend_on_the_cpu, name)(y, grad_output)
    np.testing.assert_allclose(result, portable(name)(y, grad_output), rtol=1e-6)


def test_cupy_backend_softmax_cross_entropy(cupy_backend_on_the_cpu, portable, numpy_rng):
    logits, labels = numpy_rng.normal(size=(12, 5)).astype(np.float32), numpy_rng.integers(0, 5, 12)
    loss, grad = cupy_backend_on_the_cpu.softmax_cross_entropy(logits, labels)
    expected_loss, expected_grad = portable("softmax_cross_entropy")(logits, labels)
    np.testing.assert_allclose(loss, expected_loss, rtol=1e-6)
    np.testing.assert_allclose(grad, expected_grad, rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("scalars_on_device", [False, True], ids=["host-scalars", "device-scalars"])
@pytest.mark.parametrize(("momentum", "nesterov"), [(0.0, False), (0.9, False), (0.9, True)])
def test_cupy_backend_sgd_update(cupy_backend_on_the_cpu, portable, numpy_rng, scalars_on_device, momentum, nesterov):
    lr = np.asarray(0.05, np.float32) if scalars_on_device else 0.05  # a recorded graph's 0-d learning rate
    param, grad, buffer = (numpy_rng.normal(size=(4, 3)).astype(np.float32) for _ in range(3))
    expected_param, expected_buffer = param.copy(), buffer.copy()
    options = {"momentum": momentum, "nesterov": nesterov, "weight_decay": 0.01}
    cupy_backend_on_the_cpu.sgd_update(param, grad, buffer if momentum else None, lr=lr, **options)
    portable("sgd_update")(expected_param, grad, expected_buffer if momentum else None, lr=0.05, **options)
    np.testing.assert_allclose(param, expected_param, rtol=1e-6)
    np.testing.assert_allclose(buffer, expected_buffer, rtol=1e-6)


@pytest.mark.parametrize("scalars_on_device", [False, True], ids=["host-scalars", "device-scalars"])
def test_cupy_backend_adam_update(cupy_backend_on_the_cpu, portable, numpy_rng, scalars_on_device):
    lr, step = (np.asarray(0.01, np.float32), np.asarray(3, np.float32)) if scalars_on_device else (0.01, 3)
    param, grad, m = (numpy_rng.normal(size=(4, 3)).astype(np.float32) for _ in range(3))
    v = numpy_rng.uniform(size=(4, 3)).astype(np.float32)
    expected = [array.copy() for array in (param, m, v)]
    options = {"beta1": 0.9, "beta2": 0.99, "eps": 1e-6}
    cupy_backend_on_the_cpu.adam_update(param, grad, m, v, lr=lr, step=step, **options)
    portable("adam_update")(expected[0], grad, expected[1], expected[2], lr=0.01, step=3, **options)
    for result, wanted in zip((param, m, v), expected):
        np.testing.assert_allclose(result, wanted, rtol=1e-5)
