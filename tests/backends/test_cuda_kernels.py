"""The fused CUDA kernels of the ops, with no GPU needed.

Each kernel source lives beside the op it speeds up (activations, losses, optimisers). Here every
body runs on the CPU through tests/cuda_emulator.py (compiled with g++) against the op's portable
code, in float32 and float64; then the ops themselves run with a NumPy backend whose
`elementwise()` hands out CuPy's kernel wrapper around the emulator, which checks the glue
(argument order, scalars, output allocation) end to end. On a GPU, test_backends.py runs the real
kernels against the same portable code.
"""

import shutil
import sys
from types import SimpleNamespace

import numpy as np
import pytest
from cuda_emulator import Emulator

import diynn
from diynn import optim
from diynn.backends import Elementwise, use
from diynn.backends.cupy_backend import CompiledKernel
from diynn.functional import activations, losses

# slow: compiles the kernels with g++ and nvcc (one run of each, about 1 s); the full suite runs them
pytestmark = [
    pytest.mark.skipif(shutil.which("g++") is None, reason="needs g++ to compile the kernel bodies"),
    pytest.mark.slow,
]

DTYPES = [np.float32, np.float64]
KERNELS = [
    value
    for module in (activations, losses, optim)
    for value in vars(module).values()
    if isinstance(value, Elementwise)
]


def _type_maps(kernel):
    """Every typing a test runs `kernel` in: T each float dtype, and the labels' L each index dtype."""
    labels = [{"L": "int32"}, {"L": "int64"}] if "raw L " in kernel.in_params else [{}]
    return [{"T": np.dtype(dtype).name, **label} for dtype in DTYPES for label in labels]


@pytest.fixture(scope="module")
def emulator(tmp_path_factory):
    """The emulator, with every kernel in every typing compiled in one g++ run (one per kernel and
    typing would take about 0.3 s each); a kernel the batch lacks compiles on its own when run."""
    emulator = Emulator(tmp_path_factory.mktemp("kernels"))
    emulator.precompile([(kernel, types) for kernel in KERNELS for types in _type_maps(kernel)])
    return emulator


def _tolerance(dtype):
    return {"rtol": 1e-5, "atol": 1e-6} if dtype == np.float32 else {"rtol": 1e-12, "atol": 1e-14}


def test_every_fused_kernel_is_checked():
    names = {kernel.name for kernel in KERNELS}
    assert names == {
        "diynn_relu_backward",
        "diynn_tanh_backward",
        "diynn_sigmoid_backward",
        "diynn_gelu",
        "diynn_gelu_backward",
        "diynn_silu",
        "diynn_silu_backward",
        "diynn_softmax_cross_entropy",
        "diynn_sgd",
        "diynn_sgd_momentum",
        "diynn_adam",
    }


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize(
    ("kernel", "portable", "forward"),
    [
        (activations.RELU_BACKWARD, activations.relu_backward, lambda x: np.maximum(x, 0)),
        (activations.TANH_BACKWARD, activations.tanh_backward, np.tanh),
        (activations.SIGMOID_BACKWARD, activations.sigmoid_backward, lambda x: 1 / (1 + np.exp(-x))),
    ],
)
def test_activation_backward(emulator, numpy_rng, dtype, kernel, portable, forward):
    y = forward(numpy_rng.normal(size=(33, 7))).astype(dtype)
    grad_output = numpy_rng.normal(size=(33, 7)).astype(dtype)
    result = np.full_like(y, np.nan)
    emulator.run(kernel, y, grad_output, result)
    np.testing.assert_allclose(result, portable(y, grad_output), **_tolerance(dtype))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("tanh_form", [0, 1])
def test_gelu(emulator, numpy_rng, dtype, tanh_form):
    x = (numpy_rng.normal(size=(33, 7)) * 3).astype(dtype)
    grad_output = numpy_rng.normal(size=(33, 7)).astype(dtype)
    y, grad_x = np.full_like(x, np.nan), np.full_like(x, np.nan)
    emulator.run(activations.GELU_FORWARD, x, tanh_form, y)
    emulator.run(activations.GELU_BACKWARD, x, grad_output, tanh_form, grad_x)
    with use("numpy") as backend:
        expected = activations._gelu_portable(backend, x, bool(tanh_form))
        expected_grad = activations._gelu_backward_portable(backend, x, bool(tanh_form), grad_output)
    # float32's 1 + tanh(u) near u = -4 keeps a few bits: an ulp of tanh is 1e-6 of y there
    tolerance = {"rtol": 1e-5, "atol": 1e-5} if dtype == np.float32 else _tolerance(dtype)
    np.testing.assert_allclose(y, expected, **tolerance)
    np.testing.assert_allclose(grad_x, expected_grad, **tolerance)


@pytest.mark.parametrize("dtype", DTYPES)
def test_silu(emulator, numpy_rng, dtype):
    x = (numpy_rng.normal(size=(33, 7)) * 5).astype(dtype)
    x[0, :3] = [-100, 100, 0]  # exp(-x) overflows to infinity in float32: y = -0
    grad_output = numpy_rng.normal(size=(33, 7)).astype(dtype)
    y, grad_x = np.full_like(x, np.nan), np.full_like(x, np.nan)
    emulator.run(activations.SILU_FORWARD, x, y)
    emulator.run(activations.SILU_BACKWARD, x, grad_output, grad_x)
    with use("numpy") as backend:
        expected = activations._silu_portable(backend, x)
        expected_grad = activations._silu_backward_portable(backend, x, grad_output)
    np.testing.assert_allclose(y, expected, **_tolerance(dtype))
    np.testing.assert_allclose(grad_x, expected_grad, **_tolerance(dtype))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("label_dtype", [np.int64, np.int32])
def test_softmax_cross_entropy(emulator, numpy_rng, dtype, label_dtype):
    logits = (numpy_rng.normal(size=(50, 10)) * 30).astype(dtype)  # large logits: needs the max shift
    labels = numpy_rng.integers(0, 10, 50).astype(label_dtype)
    result, grad = np.full(50, np.nan, dtype), np.full_like(logits, np.nan)
    emulator.run(losses.SOFTMAX_CROSS_ENTROPY, logits, labels, 10, 1 / 50, result, grad)
    expected_loss, expected_grad = losses.softmax_cross_entropy(logits, labels)
    np.testing.assert_allclose(result.mean(), expected_loss, **_tolerance(dtype))
    np.testing.assert_allclose(grad, expected_grad, **_tolerance(dtype))


def test_softmax_cross_entropy_marks_a_bad_label(emulator):
    logits = np.zeros((3, 4), np.float32)
    labels = np.array([1, 4, -1])
    result, grad = np.zeros(3, np.float32), np.zeros_like(logits)
    emulator.run(losses.SOFTMAX_CROSS_ENTROPY, logits, labels, 4, 1 / 3, result, grad)
    np.testing.assert_allclose(result[0], np.log(4), rtol=1e-6)
    assert np.isnan(result[1:]).all() and np.isnan(grad[1:]).all() and np.isfinite(grad[0]).all()
    with pytest.raises(ValueError, match=r"labels must be in \[0, 4\) for 4 logits, got 4"):
        losses.softmax_cross_entropy(logits, labels)


def _sgd_portable(param, grad, buffer, lr, momentum, nesterov):
    """SGD.update_one's portable code on copies."""
    param, buffer = param.copy(), buffer.copy()
    with use("numpy"):
        optimizer = optim.SGD([diynn.Parameter(param)], lr=lr, momentum=momentum, nesterov=nesterov)
        optimizer.update_one(param, grad, {"momentum": buffer} if momentum else {})
    return param, buffer


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize(("momentum", "nesterov"), [(0.0, False), (0.9, False), (0.9, True)])
def test_sgd(emulator, numpy_rng, dtype, momentum, nesterov):
    param, grad, buffer = (numpy_rng.normal(size=(6, 5)).astype(dtype) for _ in range(3))
    expected_param, expected_buffer = _sgd_portable(param, grad, buffer, 0.05, momentum, nesterov)
    if momentum:
        emulator.run(optim.SGD_MOMENTUM_STEP, grad, 0.05, momentum, int(nesterov), param, buffer)
        np.testing.assert_allclose(buffer, expected_buffer, **_tolerance(dtype))
    else:
        emulator.run(optim.SGD_STEP, grad, 0.05, param)
    np.testing.assert_allclose(param, expected_param, **_tolerance(dtype))


@pytest.mark.parametrize("dtype", DTYPES)
def test_adam(emulator, numpy_rng, dtype):
    param, grad, m = (numpy_rng.normal(size=(6, 5)).astype(dtype) for _ in range(3))
    v = numpy_rng.uniform(size=(6, 5)).astype(dtype)
    lr, beta1, beta2, eps, step = 0.01, 0.9, 0.99, 1e-6, 3
    expected = [array.copy() for array in (param, m, v)]
    optimizer = optim.Adam([diynn.Parameter(expected[0])], lr=lr, betas=(beta1, beta2), eps=eps)
    optimizer.update_one(expected[0], grad, {"step": step - 1, "m": expected[1], "v": expected[2]})
    c = (1 - beta2**step) ** 0.5
    emulator.run(optim.ADAM_STEP, grad, lr * c / (1 - beta1**step), 1 - beta1, 1 - beta2, eps * c, param, m, v)
    for name, result, wanted in zip(("param", "m", "v"), (param, m, v), expected):
        np.testing.assert_allclose(result, wanted, **_tolerance(dtype), err_msg=name)


def test_a_broken_body_fails_to_compile(emulator):
    broken = Elementwise("T x", "T y", "y = undefined_function(x)", "broken")
    with pytest.raises(AssertionError, match="does not compile"):
        emulator.run(broken, np.zeros(3, np.float32), np.zeros(3, np.float32))


def _gpu_types(dtype):
    return {"T": dtype, "L": "int64"}


@pytest.fixture(scope="module")
def gpu_emulator(emulator):
    """The emulator, with every kernel compiled by nvcc in both dtypes in one run: compile_for_gpu
    then finds each kernel in its PTX (or, if the batch fails, compiles it alone to show why)."""
    emulator.precompile_for_gpu([(kernel, _gpu_types(dtype)) for kernel in KERNELS for dtype in ("float32", "float64")])
    return emulator


@pytest.mark.skipif(shutil.which("nvcc") is None, reason="needs nvcc (the CUDA compiler; no GPU needed)")
@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("kernel", KERNELS, ids=[kernel.name for kernel in KERNELS])
def test_kernel_compiles_as_cuda(gpu_emulator, kernel, dtype):
    """The device side: CUDA's own math overloads (exp, max, ...) and types, checked by nvcc."""
    gpu_emulator.compile_for_gpu(kernel, _gpu_types(dtype))


@pytest.fixture
def fused_on_the_cpu(monkeypatch, emulator):
    """The NumPy backend, with `elementwise()` returning the CuPy backend's kernel wrapper around a
    stand-in ElementwiseKernel that runs on the emulator: the ops take their fused path."""

    class Kernel:
        def __init__(self, in_params, out_params, operation, name):
            self.source = Elementwise(in_params, out_params, operation, name)
            self.inputs, self.outputs = len(in_params.split(",")), len(out_params.split(","))

        def __call__(self, *arguments):
            if len(arguments) > self.inputs:
                return emulator.run(self.source, *arguments)
            like = next(value for value in arguments if isinstance(value, np.ndarray))
            outputs = [np.empty_like(like) for _ in range(self.outputs)]
            emulator.run(self.source, *arguments, *outputs)
            return outputs[0] if self.outputs == 1 else tuple(outputs)

    fake_cupy = SimpleNamespace(ElementwiseKernel=Kernel, ndarray=np.ndarray, ascontiguousarray=np.ascontiguousarray)
    monkeypatch.setitem(sys.modules, "cupy", fake_cupy)
    with use("numpy") as backend:
        launched = []

        def elementwise(source):
            launched.append(source.name)
            return CompiledKernel(fake_cupy, source)

        monkeypatch.setattr(backend, "elementwise", elementwise)
        monkeypatch.setattr(backend, "fuses_kernels", True)
        yield launched


def _portable(function):
    """function() with the fused kernels switched off: the ops' portable array code."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(diynn.get_backend(), "elementwise", lambda source: None)
        patch.setattr(diynn.get_backend(), "fuses_kernels", False)
        return function()


@pytest.mark.parametrize("name", ["relu", "tanh", "sigmoid"])
def test_fused_activation_backward(fused_on_the_cpu, numpy_rng, name):
    y, grad_output = (np.tanh(numpy_rng.normal(size=(5, 6))).astype(np.float32) for _ in range(2))
    function = getattr(activations, f"{name}_backward")
    result = function(y, grad_output)
    assert fused_on_the_cpu == [f"diynn_{name}_backward"]
    np.testing.assert_allclose(result, _portable(lambda: function(y, grad_output)), rtol=1e-6)


@pytest.mark.parametrize("name, arguments", [("gelu", ()), ("gelu", ("tanh",)), ("silu", ())])
def test_fused_gelu_and_silu(fused_on_the_cpu, numpy_rng, name, arguments):
    x, grad_output = (numpy_rng.normal(size=(5, 6)).astype(np.float32) for _ in range(2))

    def run():
        y, cache = getattr(activations, name)(x, *arguments)
        return y, getattr(activations, f"{name}_backward")(cache, grad_output)

    result = run()
    assert fused_on_the_cpu == [f"diynn_{name}", f"diynn_{name}_backward"]
    for ours, expected in zip(result, _portable(run)):
        np.testing.assert_allclose(ours, expected, rtol=1e-5, atol=1e-6)


def test_fused_cross_entropy_loss(fused_on_the_cpu, numpy_rng):
    logits, labels = numpy_rng.normal(size=(12, 5)).astype(np.float32), numpy_rng.integers(0, 5, 12)
    loss = diynn.CrossEntropyLoss()
    value, grad = loss(logits, labels), loss.backward()
    assert fused_on_the_cpu == ["diynn_softmax_cross_entropy"]
    expected_value, expected_grad = _portable(lambda: (loss(logits, labels), loss.backward()))
    np.testing.assert_allclose(value, expected_value, rtol=1e-6)
    np.testing.assert_allclose(grad, expected_grad, rtol=1e-5, atol=1e-7)


def _train_three_steps(make_optimizer, lr):
    rng = np.random.default_rng(5)
    parameter = diynn.Parameter(rng.normal(size=(4, 3)).astype(np.float32))
    optimizer = make_optimizer([parameter])
    optimizer.lr = lr
    for _ in range(3):
        parameter.grad = rng.normal(size=(4, 3)).astype(np.float32)
        optimizer.step()
    return parameter.data


OPTIMISERS = {
    "sgd": (lambda ps: diynn.SGD(ps, lr=0.05, weight_decay=0.01), "diynn_sgd"),
    "momentum": (lambda ps: diynn.SGD(ps, lr=0.05, momentum=0.9, weight_decay=0.01), "diynn_sgd_momentum"),
    "nesterov": (lambda ps: diynn.SGD(ps, lr=0.05, momentum=0.9, nesterov=True), "diynn_sgd_momentum"),
    "adam": (lambda ps: diynn.Adam(ps, lr=0.01, betas=(0.9, 0.99), eps=1e-6, weight_decay=0.01), "diynn_adam"),
    "adamw": (lambda ps: diynn.AdamW(ps, lr=0.01), "diynn_adam"),
}


@pytest.mark.parametrize("scalars_on_device", [False, True], ids=["host-scalars", "device-scalars"])
@pytest.mark.parametrize("name", list(OPTIMISERS))
def test_fused_optimiser_step(fused_on_the_cpu, name, scalars_on_device):
    make, kernel = OPTIMISERS[name]
    lr = 0.05 if name in ("sgd", "momentum", "nesterov") else 0.01
    device_lr = np.asarray(lr, np.float32) if scalars_on_device else lr  # a recorded graph's 0-d rate
    result = _train_three_steps(make, device_lr)
    assert set(fused_on_the_cpu) == {kernel}
    expected = _portable(lambda: _train_three_steps(make, lr))
    np.testing.assert_allclose(result, expected, rtol=1e-5, atol=1e-7)
