"""One training step of the MLP 784-256-128-10 (ReLU, softmax cross-entropy, plain SGD), three ways:
diynn on a backend, a minimal hand-written NumPy step (the ceiling), and PyTorch eager; and one
step of the project's CNN (diynn.cnn(), Adam) in diynn and in PyTorch."""

from __future__ import annotations

import numpy as np

SIZES = (784, 256, 128, 10)
LEARNING_RATE = 0.01


def step_flops(batch: int) -> int:
    """FLOPs of the step's GEMMs: forward and weight gradients of the three layers, input
    gradients of layers 2 and 3 (the first layer's input gradient is not needed)."""
    macs = sum(a * b for a, b in zip(SIZES[:-1], SIZES[1:]))
    input_grads = sum(a * b for a, b in zip(SIZES[1:-1], SIZES[2:]))
    return 2 * batch * (2 * macs + input_grads)


def batch_data(batch: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    return rng.random((batch, SIZES[0]), dtype=np.float32), rng.integers(0, SIZES[-1], size=batch)


def diynn_step(batch: int, backend_name: str = "numpy"):
    import diynn

    backend = diynn.set_backend(backend_name)
    model = diynn.mlp(list(SIZES), rng=0)
    trainer = diynn.Trainer(model, diynn.CrossEntropyLoss(), diynn.SGD(model.parameters(), lr=LEARNING_RATE))
    x, y = trainer.prepare(*batch_data(batch))

    def step():
        trainer.step(x, y)

    return step, backend.synchronize


def diynn_graph_step(batch: int):
    """The diynn step on CuPy, recorded once as a CUDA graph and replayed (CapturedStep)."""
    import diynn

    backend = diynn.set_backend("cupy")
    model = diynn.mlp(list(SIZES), rng=0)
    trainer = diynn.Trainer(model, diynn.CrossEntropyLoss(), diynn.SGD(model.parameters(), lr=LEARNING_RATE))
    x, y = trainer.prepare(*batch_data(batch))
    captured = diynn.CapturedStep(trainer)

    def step():
        captured(x, y)

    return step, backend.synchronize


def ceiling_step(batch: int):
    """The fewest NumPy operations for the same step, written inline with no framework."""
    rng = np.random.default_rng(0)
    weights = [rng.normal(0, np.sqrt(2 / a), (b, a)).astype(np.float32) for a, b in zip(SIZES[:-1], SIZES[1:])]
    biases = [np.zeros(b, np.float32) for b in SIZES[1:]]
    x, y = batch_data(batch)
    rows = np.arange(batch)
    lr = np.float32(LEARNING_RATE)

    def step():
        w1, w2, w3 = weights
        h1 = x @ w1.T
        h1 += biases[0]
        np.maximum(h1, 0, out=h1)
        h2 = h1 @ w2.T
        h2 += biases[1]
        np.maximum(h2, 0, out=h2)
        z = h2 @ w3.T
        z += biases[2]
        z -= z.max(axis=1, keepdims=True)
        np.exp(z, out=z)
        z /= z.sum(axis=1, keepdims=True)
        z[rows, y] -= 1
        z /= batch  # dL/dz
        g3w, g3b = z.T @ h2, z.sum(0)
        d2 = z @ w3
        d2 *= h2 > 0
        g2w, g2b = d2.T @ h1, d2.sum(0)
        d1 = d2 @ w2
        d1 *= h1 > 0
        g1w, g1b = d1.T @ x, d1.sum(0)
        for parameter, grad in zip((w1, biases[0], w2, biases[1], w3, biases[2]), (g1w, g1b, g2w, g2b, g3w, g3b)):
            grad *= lr
            parameter -= grad

    step.weights = weights  # for the test that checks it against diynn's step
    return step, lambda: None


def torch_step(batch: int, device: str = "cpu"):
    import torch

    torch.manual_seed(0)
    layers = []
    for index, (a, b) in enumerate(zip(SIZES[:-1], SIZES[1:])):
        layers.append(torch.nn.Linear(a, b))
        if index < len(SIZES) - 2:
            layers.append(torch.nn.ReLU())
    model = torch.nn.Sequential(*layers).to(device)
    return _torch_training_step(model, torch.optim.SGD(model.parameters(), lr=LEARNING_RATE), batch_data(batch), device)


def _torch_training_step(model, optimizer, data, device: str):
    """(step, synchronize) for one PyTorch training step of `model` on the batch `data` (NumPy x, y)."""
    import torch

    loss = torch.nn.CrossEntropyLoss()
    x, y = (torch.from_numpy(array).to(device) for array in data)

    def step():
        optimizer.zero_grad(set_to_none=True)
        loss(model(x), y).backward()
        optimizer.step()

    step.model = model  # for the tests that compare it with diynn's step
    synchronize = torch.cuda.synchronize if device == "cuda" else (lambda: None)
    return step, synchronize


def cnn_batch(batch: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    return rng.random((batch, 1, 28, 28), dtype=np.float32), rng.integers(0, 10, size=batch)


def diynn_cnn_step(batch: int, backend_name: str = "numpy", graph: bool = False):
    """diynn.cnn() (two conv blocks with batch norm, dense head with dropout) trained with Adam;
    with `graph` (CuPy), the step recorded once as a CUDA graph and replayed (CapturedStep)."""
    import diynn

    backend = diynn.set_backend(backend_name)
    model = diynn.cnn(rng=0)
    trainer = diynn.Trainer(model, diynn.CrossEntropyLoss(), diynn.Adam(model.parameters()))
    x, y = trainer.prepare(*cnn_batch(batch))
    run = diynn.CapturedStep(trainer) if graph else trainer.step

    def step():
        run(x, y)

    return step, backend.synchronize


def torch_cnn_step(batch: int, device: str = "cpu"):
    """The same CNN in PyTorch: conv 3x3 (no bias) - max-pool 2 - batch norm - ReLU, twice, then
    Linear 3136-128, ReLU, dropout 0.5, Linear 128-10; Adam."""
    import torch
    from torch import nn

    torch.manual_seed(0)
    blocks = []
    for c_in, c_out in ((1, 32), (32, 64)):
        blocks += [nn.Conv2d(c_in, c_out, 3, padding=1, bias=False), nn.MaxPool2d(2), nn.BatchNorm2d(c_out), nn.ReLU()]
    model = nn.Sequential(
        *blocks, nn.Flatten(), nn.Linear(64 * 7 * 7, 128), nn.ReLU(), nn.Dropout(0.5), nn.Linear(128, 10)
    ).to(device)
    return _torch_training_step(model, torch.optim.Adam(model.parameters()), cnn_batch(batch), device)


def peak_sgemm(size: int = 2048, repeats: int = 5) -> float:
    """The large-square float32 GEMM rate of NumPy's BLAS, FLOP/s (best of `repeats`)."""
    import time

    a = np.random.default_rng(0).random((size, size), dtype=np.float32)
    b = np.random.default_rng(1).random((size, size), dtype=np.float32)
    a @ b
    best = min(_timed(lambda: a @ b, time) for _ in range(repeats))
    return 2 * size**3 / best


def _timed(function, time):
    start = time.perf_counter()
    function()
    return time.perf_counter() - start
