"""Hot kernels on the GPU (CuPy backend): each op with its fused kernel against the same op's
portable array code (the kernels switched off), run on CuPy, and the Linear layer against a bare
CuPy matmul. Every timed call queues REPEAT launches and then waits for the device, so
launch overhead counts as it does in training. Skipped without CuPy and a GPU.

Run by benchmarks/report.py (or `python -m pytest benchmarks/test_gpu_kernels.py`).
"""

import numpy as np
import pytest

import diynn
from diynn.backends import BackendError
from diynn.functional.activations import relu_backward
from diynn.functional.losses import softmax_cross_entropy

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


@pytest.fixture
def role(request, monkeypatch):
    """ "ours": the fused kernels; "reference": the portable code (elementwise() answers None)."""
    if request.param == "reference":
        monkeypatch.setattr(GPU, "elementwise", lambda source: None)
    return request.param


@pytest.mark.benchmark(group="gpu: softmax cross-entropy forward + backward (256x10)")
@pytest.mark.parametrize("role", ["ours", "reference"], indirect=True)
def test_softmax_cross_entropy(benchmark, role):
    logits, labels = _array((BATCH, 10)), GPU.asarray(rng.integers(0, 10, BATCH))
    _timed(benchmark, softmax_cross_entropy, logits, labels)


@pytest.mark.benchmark(group="gpu: relu backward (256x256)")
@pytest.mark.parametrize("role", ["ours", "reference"], indirect=True)
def test_relu_backward(benchmark, role):
    y, grad = GPU.xp.maximum(_array((BATCH, 256)), 0), _array((BATCH, 256))
    _timed(benchmark, relu_backward, y, grad)


def _optimiser_step(make):
    """optimizer.step() on the MLP's parameters (235k), with fixed gradients."""
    parameters = diynn.mlp([784, 256, 128, 10], rng=0).parameters()
    for parameter in parameters:
        parameter.grad = GPU.xp.ones_like(parameter.data) * 1e-3
    return make(parameters).step


@pytest.mark.benchmark(group="gpu: SGD momentum update (MLP parameters, 235k)")
@pytest.mark.parametrize("role", ["ours", "reference"], indirect=True)
def test_sgd_momentum(benchmark, role):
    _timed(benchmark, _optimiser_step(lambda ps: diynn.SGD(ps, lr=1e-3, momentum=0.9)))


@pytest.mark.benchmark(group="gpu: adam update (MLP parameters, 235k)")
@pytest.mark.parametrize("role", ["ours", "reference"], indirect=True)
def test_adam(benchmark, role):
    _timed(benchmark, _optimiser_step(lambda ps: diynn.Adam(ps, lr=1e-3)))


@pytest.mark.benchmark(group="gpu: linear forward (256x784 @ 784x256)")
@pytest.mark.parametrize("role", ["ours", "reference"], indirect=True)
def test_linear(benchmark, role):
    layer = diynn.Linear(784, 256, rng=0)
    x = _array((BATCH, 784))
    if role == "ours":
        _timed(benchmark, layer, x)
    else:
        weight, bias = layer.weight.data, layer.bias.data
        _timed(benchmark, lambda: x @ weight.T + bias)
