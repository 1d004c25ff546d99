"""Hot kernels, diynn against the fewest hand-written NumPy operations doing the same work.

Run by benchmarks/report.py (or `python -m pytest benchmarks/test_kernels.py`); each group
pairs `test_ours_*` with `test_reference_*`, and the report gives their ratio.
Never part of the test suite.
"""

import numpy as np
import pytest

import diynn

BATCH = 256
rng = np.random.default_rng(0)
X = rng.random((BATCH, 784), dtype=np.float32)
W = rng.normal(0, 0.05, (256, 784)).astype(np.float32)
LOGITS = rng.normal(size=(BATCH, 10)).astype(np.float32)
LABELS = rng.integers(0, 10, BATCH)
HIDDEN = rng.normal(size=(BATCH, 256)).astype(np.float32)


@pytest.fixture(autouse=True)
def numpy_backend(request):
    """The NumPy backend; the hand-written references run with the compiled kernels off, so that
    NumPy's BLAS has all its threads (diynn holds it at one while its kernels own the cores); the
    two MLP steps, both diynn's, keep the same kernels."""
    kernels = diynn.kernels()
    group = request.node.get_closest_marker("benchmark").kwargs["group"]
    if request.node.name.startswith("test_reference") and not group.startswith("MLP step"):
        diynn.set_kernels("portable")
    with diynn.use("numpy"):
        yield
    diynn.set_kernels(kernels)


@pytest.mark.benchmark(group="linear forward (256x784 @ 784x256)")
def test_ours_linear(benchmark):
    layer = diynn.Linear(784, 256, rng=0)
    benchmark(layer, X)


@pytest.mark.benchmark(group="linear forward (256x784 @ 784x256)")
def test_reference_linear(benchmark):
    bias = np.zeros(256, np.float32)

    def forward():
        y = X @ W.T
        y += bias
        return y

    benchmark(forward)


@pytest.mark.benchmark(group="softmax (256x10)")
def test_ours_softmax(benchmark):
    benchmark(diynn.Softmax(), LOGITS)


@pytest.mark.benchmark(group="softmax (256x10)")
def test_reference_softmax(benchmark):
    def softmax():
        e = np.exp(LOGITS - LOGITS.max(axis=1, keepdims=True))
        e /= e.sum(axis=1, keepdims=True)
        return e

    benchmark(softmax)


@pytest.mark.benchmark(group="cross-entropy forward + backward (256x10)")
def test_ours_cross_entropy(benchmark):
    loss = diynn.CrossEntropyLoss()

    def both():
        loss(LOGITS, LABELS)
        return loss.backward()

    benchmark(both)


@pytest.mark.benchmark(group="cross-entropy forward + backward (256x10)")
def test_reference_cross_entropy(benchmark):
    rows = np.arange(BATCH)

    def both():
        shifted = LOGITS - LOGITS.max(axis=1, keepdims=True)
        p = np.exp(shifted)
        total = p.sum(axis=1, keepdims=True)
        p /= total
        loss = np.mean(np.log(total[:, 0]) - shifted[rows, LABELS])
        p[rows, LABELS] -= 1
        p /= BATCH
        return loss, p

    benchmark(both)


@pytest.mark.benchmark(group="relu forward + backward (256x256)")
def test_ours_relu(benchmark):
    relu = diynn.ReLU()

    def both():
        relu(HIDDEN)
        return relu.backward(HIDDEN)

    benchmark(both)


@pytest.mark.benchmark(group="relu forward + backward (256x256)")
def test_reference_relu(benchmark):
    def both():
        y = np.maximum(HIDDEN, 0)
        return HIDDEN * (y > 0)

    benchmark(both)


@pytest.mark.benchmark(group="adam update (MLP parameters, 235k)")
def test_ours_adam(benchmark):
    model = diynn.mlp([784, 256, 128, 10], rng=0)
    grads = [np.ones(p.shape, np.float32) * 1e-3 for p in model.parameters()]
    optimizer = diynn.Adam(model.parameters())

    def step():
        for parameter, grad in zip(model.parameters(), grads):
            parameter.grad = grad
        optimizer.step()

    benchmark(step)


@pytest.mark.benchmark(group="adam update (MLP parameters, 235k)")
def test_reference_adam(benchmark):
    params = [p.data.copy() for p in diynn.mlp([784, 256, 128, 10], rng=0).parameters()]
    moments = [(np.zeros_like(p), np.zeros_like(p)) for p in params]
    grad = [np.ones_like(p) * 1e-3 for p in params]
    state = {"t": 0}

    def step():
        state["t"] += 1
        t = state["t"]
        for p, g, (m, v) in zip(params, grad, moments):
            m *= 0.9
            m += 0.1 * g
            v *= 0.999
            v += 0.001 * (g * g)
            p -= 1e-3 / (1 - 0.9**t) * m / (np.sqrt(v / (1 - 0.999**t)) + 1e-8)

    benchmark(step)


CONV_X = rng.random((128, 32, 14, 14), dtype=np.float32)
CONV_GRAD = np.ones((128, 64, 14, 14), np.float32)


@pytest.mark.benchmark(group="conv2d 32->64 3x3, 14x14, batch 128: forward + backward")
def test_ours_conv2d(benchmark):
    layer = diynn.Conv2d(32, 64, 3, padding=1, rng=0)

    def both():
        layer.zero_grad()
        layer(CONV_X)
        return layer.backward(CONV_GRAD)

    benchmark(both)


@pytest.mark.benchmark(group="conv2d 32->64 3x3, 14x14, batch 128: forward + backward")
def test_reference_conv2d(benchmark):
    """The same im2col + GEMM algorithm written directly in NumPy, with np.add.at-free col2im."""
    weight = rng.normal(0, 0.05, (64, 32 * 9)).astype(np.float32)

    def both():
        padded = np.pad(CONV_X, ((0, 0), (0, 0), (1, 1), (1, 1)))
        windows = np.lib.stride_tricks.sliding_window_view(padded, (3, 3), axis=(2, 3))
        cols = windows.transpose(1, 4, 5, 0, 2, 3).reshape(32 * 9, -1)
        y = (weight @ cols).reshape(64, 128, 14, 14).transpose(1, 0, 2, 3).copy()
        grad = CONV_GRAD.transpose(1, 0, 2, 3).reshape(64, -1)
        grad_weight = grad @ cols.T
        grad_cols = (weight.T @ grad).reshape(32, 3, 3, 128, 14, 14)
        grad_padded = np.zeros((32, 128, 16, 16), np.float32)
        for i in range(3):
            for j in range(3):
                grad_padded[:, :, i : i + 14, j : j + 14] += grad_cols[:, i, j]
        return y, grad_weight, grad_padded[:, :, 1:-1, 1:-1].transpose(1, 0, 2, 3)

    benchmark(both)


def _mlp_step():
    import steps

    step, _ = steps.diynn_step(256, "numpy")
    return step


@pytest.mark.benchmark(group="MLP step (batch 256): array-api-compat namespace vs plain numpy")
def test_ours_array_api_compat_step(benchmark):
    benchmark(_mlp_step())


@pytest.mark.benchmark(group="MLP step (batch 256): array-api-compat namespace vs plain numpy")
def test_reference_plain_numpy_step(benchmark, monkeypatch):
    """The same diynn step with the backend's namespace swapped for the numpy module itself."""
    backend = diynn.get_backend()
    monkeypatch.setattr(backend, "xp", np)
    benchmark(_mlp_step())
