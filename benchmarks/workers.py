"""Long-lived worker processes that time one implementation at a time, on request.

NumPy and PyTorch never run in the same process: their thread pools spin-wait and steal the
cores from each other. The parent sends one command at a time, so only one worker is busy.
"""

from __future__ import annotations

import multiprocessing
import os
import statistics
import sys
import time

import steps as step_library

# The convolutions of the CNN (conv1, conv2) and of the conv autoencoder (enc1, enc2: 4x4 stride 2;
# dec1, dec2: 4x4 stride-2 transposed): (C_in, C_out, H = W of the input, kernel, stride, padding, transposed)
CONV_SHAPES = {
    "conv1": (1, 32, 28, 3, 1, 1, False),
    "conv2": (32, 64, 14, 3, 1, 1, False),
    "enc1": (1, 16, 28, 4, 2, 1, False),
    "enc2": (16, 32, 14, 4, 2, 1, False),
    "dec1": (32, 16, 7, 4, 2, 1, True),
    "dec2": (16, 1, 14, 4, 2, 1, True),
}

# The CNN's other layers with a cost of their own: (kind, channels, H = W of the input)
LAYER_SHAPES = {
    "pool1": ("max-pool 2x2", 32, 28),
    "pool2": ("max-pool 2x2", 64, 14),
    "bn1": ("batch norm", 32, 14),
    "bn2": ("batch norm", 64, 7),
}


CNN_STEPS = ("diynn-cnn", "diynn-cnn-cupy", "diynn-cnn-cupy-graph", "torch-cnn", "torch-cnn-cuda")


def make_step(name: str, batch: int):
    """(step, synchronize) for an implementation name such as "diynn-numpy" or "torch-cpu"."""
    if name == "diynn-cupy-graph":
        return step_library.diynn_graph_step(batch)
    if name in CNN_STEPS:
        if name.startswith("torch-"):
            return step_library.torch_cnn_step(batch, "cuda" if name.endswith("-cuda") else "cpu")
        return step_library.diynn_cnn_step(batch, "cupy" if "-cupy" in name else "numpy", name.endswith("-graph"))
    if name.startswith("diynn-"):
        return step_library.diynn_step(batch, name.removeprefix("diynn-"))
    if name == "ceiling":
        return step_library.ceiling_step(batch)
    if name.startswith("torch-"):
        return step_library.torch_step(batch, name.removeprefix("torch-"))
    if name.startswith("conv-"):
        return conv_step(name.removeprefix("conv-"), batch)
    if name.startswith("layer-"):
        return layer_step(name.removeprefix("layer-"), batch)
    raise ValueError(f"unknown implementation {name!r}")


def conv_step(name: str, batch: int):
    """Forward + backward of one Conv2d: "diynn:conv1" or "torch:conv2"."""
    import numpy as np

    library, shape = name.split(":")
    c_in, c_out, size, kernel, stride, padding, transposed = CONV_SHAPES[shape]
    x = np.random.default_rng(0).random((batch, c_in, size, size), dtype=np.float32)

    def make(nn, **init):
        kind = nn.ConvTranspose2d if transposed else nn.Conv2d
        return kind(c_in, c_out, kernel, stride=stride, padding=padding, **init)

    return _forward_backward_step(library, make, x, input_grad=c_in > 1)  # a first layer needs no input gradient


def layer_step(name: str, batch: int):
    """Forward + backward (training mode) of a max-pool or batch norm: "diynn:pool1" or "torch:bn2"."""
    import numpy as np

    library, shape = name.split(":")
    kind, channels, size = LAYER_SHAPES[shape]
    x = np.random.default_rng(0).standard_normal((batch, channels, size, size), dtype=np.float32)

    def make(nn, **init):  # neither layer has weights to initialise
        return nn.MaxPool2d(2) if kind.startswith("max-pool") else nn.BatchNorm2d(channels)

    return _forward_backward_step(library, make, x, input_grad=True)


def _forward_backward_step(library: str, make, x, input_grad: bool):
    """(step, synchronize) running forward + backward of `make(nn, **init)`, the layer built from
    torch.nn or from diynn (init: diynn's seed), on the NumPy input x, a gradient of ones."""
    if library == "torch":
        import torch

        layer = make(torch.nn)
        x_t = torch.from_numpy(x).requires_grad_(input_grad)

        def step():
            layer.zero_grad(set_to_none=True)
            x_t.grad = None
            y = layer(x_t)
            y.backward(torch.ones_like(y))

        return step, lambda: None
    import diynn

    backend = diynn.set_backend(library.removeprefix("diynn") or "numpy")
    layer = make(diynn, rng=0)
    x_b = backend.asarray(x)
    ones = backend.xp.ones_like(layer(x_b))

    def step():
        layer.zero_grad()
        layer(x_b)
        layer.backward(ones, input_grad=input_grad)

    return step, backend.synchronize


def _serve(connection):
    cache = {}
    while (message := connection.recv()) is not None:
        command, arguments = message
        try:
            connection.send(("ok", COMMANDS[command](cache, *arguments)))
        except Exception as error:  # report to the parent, keep serving
            connection.send(("error", f"{type(error).__name__}: {error}"))
    # Leave at once: the interpreter's teardown costs a PyTorch worker about a second of CPU, with
    # the parent waiting in close(), and a worker holds nothing (files, results) that needs it.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


def _time(cache, name, batch, seconds):
    """Median seconds per step over about `seconds` of steps, after a quarter of that warming up."""
    if (name, batch) not in cache:
        cache[(name, batch)] = make_step(name, batch)
    step, synchronize = cache[(name, batch)]
    warm_until = time.perf_counter() + seconds / 4  # allocator and caches reach their steady state
    while time.perf_counter() < warm_until:
        step()
    synchronize()
    samples, deadline = [], time.perf_counter() + seconds
    while time.perf_counter() < deadline or len(samples) < 5:
        start = time.perf_counter()
        step()
        synchronize()
        samples.append(time.perf_counter() - start)
    return statistics.median(samples)


def _memory(cache, name, batch, steps, warmup):
    """Growth of the memory held (tracemalloc) between step `warmup` and step `warmup` + `steps`:
    a steady state allocates nothing that outlives a step."""
    import tracemalloc

    step, synchronize = make_step(name, batch)
    tracemalloc.start()
    for _ in range(warmup):
        step()
    synchronize()
    before = tracemalloc.get_traced_memory()[0]
    tracemalloc.reset_peak()
    for _ in range(steps):
        step()
    synchronize()
    after, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return {"steps": steps, "warmup": warmup, "growth_bytes": after - before, "peak_bytes_per_step": peak - before}


def _peak(cache, size):
    return step_library.peak_sgemm(size)


def _info(cache):
    from machine import machine_info

    return machine_info()


COMMANDS = {"time": _time, "memory": _memory, "peak": _peak, "info": _info}


class Worker:
    """A spawned process serving COMMANDS; `call` blocks until the answer comes back."""

    def __init__(self, label: str):
        context = multiprocessing.get_context("spawn")
        self.label = label
        self.connection, child = context.Pipe()
        self.process = context.Process(target=_serve, args=(child,), daemon=True)
        self.process.start()

    def call(self, command, *arguments):
        self.connection.send((command, arguments))
        status, value = self.connection.recv()
        if status != "ok":
            raise RuntimeError(f"worker {self.label}: {value}")
        return value

    def close(self):
        self.connection.send(None)
        self.process.join(timeout=10)
