"""Hot kernels on the GPU (CuPy backend): each fused kernel against the generic code it replaces
(the backend base class's portable fallback, run on CuPy), and the Linear layer against a bare
CuPy matmul. Every timed call queues REPEAT launches and then waits for the device, so
launch overhead counts as it does in training. Skipped without CuPy and a GPU.

Run by benchmarks/report.py (or `python -m pytest benchmarks/test_gpu_kernels.py`).
"""

import numpy as np
import pytest

import diynn
from backends import BackendError
from backends.base import Backend

try:
    GPU = diynn.set_backend("cupy")
except BackendError:
    GPU = None
finally:
    diynn.set_backend("numpy")

pytestmark = pytest.mark.skipif(GPU is None, reason="needs CuPy and a CUDA GPU")

REPEAT = 20
BATCH = 256
rng = np.random.default_rng(0)


@pytest.fixture(autouse=True)
def cupy_backend():
    with diynn.use("cupy"):
        yield


def _timed(benchmark, function, *arguments):
    def repeated():
        for _ in range(REPEAT):
            function(*arguments)
        GPU.synchronize()

    repeated()  # compile outside the timing
    benchmark(repeated)


def _array(shape, dtype=np.float32):
    return GPU.asarray(rng.normal(size=shape).astype(dtype))


def _portable(name):
    return getattr(Backend, name).__get__(GPU)


@pytest.mark.benchmark(group="gpu: softmax cross-entropy forward + backward (256x10)")
@pytest.mark.parametrize("role", ["ours", "reference"])
def test_softmax_cross_entropy(benchmark, role):
    logits, labels = _array((BATCH, 10)), GPU.asarray(rng.integers(0, 10, BATCH))
    function = GPU.softmax_cross_entropy if role == "ours" else _portable("softmax_cross_entropy")
    _timed(benchmark, function, logits, labels)


@pytest.mark.benchmark(group="gpu: relu backward (256x256)")
@pytest.mark.parametrize("role", ["ours", "reference"])
def test_relu_backward(benchmark, role):
    y, grad = GPU.xp.maximum(_array((BATCH, 256)), 0), _array((BATCH, 256))
    _timed(benchmark, GPU.relu_backward if role == "ours" else _portable("relu_backward"), y, grad)


def _mlp_parameters():
    return [(p.data, GPU.xp.ones_like(p.data) * 1e-3) for p in diynn.mlp([784, 256, 128, 10], rng=0).parameters()]


@pytest.mark.benchmark(group="gpu: SGD momentum update (MLP parameters, 235k)")
@pytest.mark.parametrize("role", ["ours", "reference"])
def test_sgd_momentum(benchmark, role):
    update = GPU.sgd_update if role == "ours" else _portable("sgd_update")
    parameters = [(p, g, GPU.xp.zeros_like(p)) for p, g in _mlp_parameters()]

    def step():
        for p, g, buffer in parameters:
            update(p, g, buffer, lr=1e-3, momentum=0.9)

    _timed(benchmark, step)


@pytest.mark.benchmark(group="gpu: adam update (MLP parameters, 235k)")
@pytest.mark.parametrize("role", ["ours", "reference"])
def test_adam(benchmark, role):
    update = GPU.adam_update if role == "ours" else _portable("adam_update")
    parameters = [(p, g, GPU.xp.zeros_like(p), GPU.xp.zeros_like(p)) for p, g in _mlp_parameters()]

    def step():
        for p, g, m, v in parameters:
            update(p, g, m, v, lr=1e-3, beta1=0.9, beta2=0.999, eps=1e-8, step=10)

    _timed(benchmark, step)


@pytest.mark.benchmark(group="gpu: linear forward (256x784 @ 784x256)")
@pytest.mark.parametrize("role", ["ours", "reference"])
def test_linear(benchmark, role):
    layer = diynn.Linear(784, 256, rng=0)
    x = _array((BATCH, 784))
    if role == "ours":
        _timed(benchmark, layer, x)
    else:
        weight, bias = layer.weight.data, layer.bias.data
        _timed(benchmark, lambda: x @ weight.T + bias)
