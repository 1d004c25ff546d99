"""CUDA-graph training steps. Without a GPU: clear errors, and the optimisers' device-scalar
mode (what a recorded step relies on) checked on every backend. With a GPU (CuPy): recorded
steps against ordinary ones."""

import contextlib
import functools

import numpy as np
import pytest

import diynn
from diynn.backends import BackendError
from diynn.training.cuda_graphs import scalars_on_device

OPTIMISERS = {
    "sgd-nesterov": lambda parameters: diynn.SGD(parameters, lr=0.1, momentum=0.9, nesterov=True, weight_decay=0.01),
    "adam": lambda parameters: diynn.Adam(parameters, lr=0.01),
    "adamw": lambda parameters: diynn.AdamW(parameters, lr=0.01),
}


def _trainer(optimiser="adam", dropout=0.0):
    model = diynn.mlp([12, 16, 3], dropout=dropout, rng=0)
    return diynn.Trainer(model, diynn.CrossEntropyLoss(), OPTIMISERS[optimiser](model.parameters()))


def _batches(trainer, count, size=8, seed=0):
    rng = np.random.default_rng(seed)
    return [trainer.prepare(rng.normal(size=(size, 12)), rng.integers(0, 3, size)) for _ in range(count)]


def _weights(model, backend):
    return [backend.to_numpy(parameter.data) for parameter in model.parameters()]


def test_capture_needs_the_cupy_backend(backend):
    if backend.name == "cupy":
        pytest.skip("checks the error of the backends that cannot capture")
    trainer = _trainer()
    with pytest.raises(BackendError, match="CUDA graph capture needs the cupy backend"):
        diynn.CapturedStep(trainer)
    with pytest.raises(BackendError, match="cupy"):
        trainer.fit(np.zeros((4, 12)), np.zeros(4, dtype=np.int64), epochs=1, cuda_graph=True, progress=False)


def test_recording_needs_a_warm_up_step():
    with pytest.raises(ValueError, match="warmup >= 1"):
        diynn.CapturedStep(_trainer(), warmup=0)


@pytest.mark.parametrize("optimiser", OPTIMISERS)
def test_optimisers_step_the_same_with_their_scalars_on_the_device(backend, optimiser):
    """What a recorded step does: learning rate and step counts read from 0-d device arrays,
    the learning rate changed by a schedule half-way."""
    results = []
    for on_device in (False, True):
        trainer = _trainer(optimiser)
        batches = _batches(trainer, 6)
        trainer.step(*batches[0])
        learning_rate = scalars_on_device(trainer.optimizer, trainer.dtype) if on_device else None
        for index, batch in enumerate(batches[1:]):
            if index == 2:
                trainer.optimizer.lr /= 4
            if on_device:
                learning_rate.refresh()
                with learning_rate.installed():
                    trainer.step(*batch)
                assert trainer.optimizer.lr == learning_rate.value  # the host number is back
            else:
                trainer.step(*batch)
        results.append(_weights(trainer.model, backend))
    for eager, device in zip(*results):
        np.testing.assert_allclose(device, eager, rtol=2e-5, atol=1e-6)


def _gpu(recording=True):
    from conftest import AVAILABLE, cupy_graph_refusal

    if "cupy" not in AVAILABLE:
        pytest.skip("needs CuPy and a CUDA GPU")
    if recording and (refusal := cupy_graph_refusal()):
        pytest.skip(refusal)
    return diynn.use("cupy")


def test_a_step_cupy_cannot_record_is_a_clear_error():
    from conftest import cupy_graph_refusal

    with _gpu(recording=False):
        if cupy_graph_refusal() is None:
            pytest.skip("this CuPy records matrix products in CUDA graphs")
        x, y = np.zeros((16, 12)), np.zeros(16, dtype=np.int64)
        with pytest.raises(BackendError, match="cuBLAS"):
            _trainer().fit(x, y, epochs=1, batch_size=4, cuda_graph=True, progress=False)


@pytest.mark.parametrize("optimiser", OPTIMISERS)
def test_replayed_steps_equal_ordinary_steps(optimiser):
    with _gpu() as backend:
        eager, graphed = _trainer(optimiser), _trainer(optimiser)
        captured = diynn.CapturedStep(graphed, warmup=2)
        losses = []
        for index, batch in enumerate(_batches(eager, 8)):
            if index == 5:  # a schedule changes the learning rate between replays
                eager.optimizer.lr /= 4
                graphed.optimizer.lr /= 4
            losses.append((float(eager.step(*batch)[0]), float(captured(*batch)[0])))
        np.testing.assert_allclose(*zip(*losses), rtol=1e-5)
        for a, b in zip(_weights(eager.model, backend), _weights(graphed.model, backend)):
            np.testing.assert_allclose(b, a, rtol=1e-5, atol=1e-6)


def test_a_model_that_branches_replays_as_it_steps():
    """A ResNet (Residual blocks, a strided shortcut) recorded and replayed: the same
    losses and weights as eager steps."""
    with _gpu() as backend:
        rng = np.random.default_rng(2)
        batches = [(rng.normal(size=(8, 1, 8, 8)), rng.integers(0, 3, 8)) for _ in range(6)]
        trainers = []
        for _ in range(2):
            model = diynn.resnet(widths=(4, 8), blocks=1, classes=3, rng=0)
            trainers.append(diynn.Trainer(model, diynn.CrossEntropyLoss(), diynn.Adam(model.parameters(), lr=0.01)))
        eager, graphed = trainers
        captured = diynn.CapturedStep(graphed, warmup=2)
        for batch in batches:
            batch = eager.prepare(*batch)
            np.testing.assert_allclose(float(captured(*batch)[0]), float(eager.step(*batch)[0]), rtol=1e-5)
        for a, b in zip(_weights(eager.model, backend), _weights(graphed.model, backend)):
            np.testing.assert_allclose(b, a, rtol=1e-5, atol=1e-6)


def test_fit_with_a_cuda_graph_matches_fit_without():
    with _gpu():
        rng = np.random.default_rng(1)
        x, y = rng.normal(size=(100, 12)), rng.integers(0, 3, 100)  # 100 = 12 batches of 8 and one of 4
        histories = [
            _trainer().fit(x, y, epochs=3, batch_size=8, cuda_graph=graph, progress=False) for graph in (False, True)
        ]
        np.testing.assert_allclose(histories[1]["loss"], histories[0]["loss"], rtol=1e-5)


def test_a_replay_needs_the_recorded_shape():
    with _gpu():
        trainer = _trainer()
        captured = diynn.CapturedStep(trainer, warmup=1)
        for batch in _batches(trainer, 3):
            captured(*batch)
        with pytest.raises(ValueError, match=r"recorded for x of shape \(8, 12\)"):
            captured(*_batches(trainer, 1, size=5)[0])


def test_dropout_masks_change_between_replays():
    with _gpu() as backend:
        trainer = _trainer(dropout=0.5)
        (dropout,) = [module for module in trainer.model.modules() if isinstance(module, diynn.Dropout)]
        captured = diynn.CapturedStep(trainer, warmup=1)
        batch = _batches(trainer, 1)[0]
        masks = []
        for _ in range(4):
            captured(*batch)
            masks.append(backend.to_numpy(dropout.scale))  # the recording's mask buffer, rewritten per replay
        assert not np.array_equal(masks[2], masks[3])


class _FakeCuda:
    """The slice of cupy.cuda that CudaGraph uses, logging each call (CPU-only check of the
    order of operations; the GPU tests above run the real thing)."""

    def __init__(self):
        self.log = []
        self.current = _FakeStream(self.log, "current")

    def Stream(self, non_blocking):  # noqa: N802 (CuPy's name)
        return _FakeStream(self.log, "own")

    def MemoryPool(self):  # noqa: N802
        return type("Pool", (), {"malloc": lambda self, size: None})()

    def get_current_stream(self):
        return self.current

    def using_allocator(self, allocator):
        return _logged_scope(self.log, "private pool")


class _FakeStream:
    def __init__(self, log, name):
        self.log, self.name = log, name

    def record(self):
        return f"event on {self.name}"

    def wait_event(self, event):
        self.log.append(f"{self.name} waits for {event}")

    def __enter__(self):
        self.log.append(f"enter {self.name}")

    def __exit__(self, *error):
        self.log.append(f"leave {self.name}")

    def begin_capture(self):
        self.log.append("begin capture")

    def end_capture(self):
        self.log.append("end capture")
        return type("Graph", (), {"launch": lambda graph, stream: self.log.append(f"launch on {stream.name}")})()


@contextlib.contextmanager
def _logged_scope(log, name):
    """A context that logs "<name> on" when entered and "<name> off" when left."""
    log.append(f"{name} on")
    try:
        yield
    finally:
        log.append(f"{name} off")


def _recorder():
    """A CudaGraph on stood-in CuPy streams, its matrix products' context logged too."""
    from types import SimpleNamespace

    from diynn.backends.cupy_backend import CudaGraph

    cuda = _FakeCuda()
    products = functools.partial(_logged_scope, cuda.log, "own cuBLAS handle")
    return CudaGraph(SimpleNamespace(cuda=cuda, __version__="14.2.0"), products), cuda.log


def test_work_cupy_refuses_to_record_ends_the_capture_and_is_a_clear_error():
    graph, log = _recorder()

    def refused():
        raise NotImplementedError("calling cuBLAS API during stream capture is currently unsupported")

    with pytest.raises(BackendError, match=r"CuPy 14.2.0 cannot record .*cuBLAS.*run it eagerly"):
        graph.capture(refused)
    assert log.index("begin capture") < log.index("end capture") < log.index("private pool off")


def test_cuda_graph_records_on_its_own_stream_with_a_private_pool():
    graph, log = _recorder()
    with pytest.raises(RuntimeError, match="before capture"):
        graph.replay()
    log.clear()
    assert graph.capture(lambda: log.append("step") or "outputs") == "outputs"
    assert log == [
        "own waits for event on current",
        "enter own",
        "own cuBLAS handle on",  # its workspace allocated before the recording and outside its pool
        "private pool on",
        "begin capture",
        "step",
        "end capture",
        "private pool off",
        "own cuBLAS handle off",
        "leave own",
        "current waits for event on own",
    ]
    log.clear()
    graph.replay()
    assert log == [
        "own waits for event on current",
        "enter own",
        "launch on own",
        "leave own",
        "current waits for event on own",
    ]


def test_a_failed_recording_still_ends_the_capture():
    graph, log = _recorder()

    def failing_step():
        raise FloatingPointError("boom")

    with pytest.raises(FloatingPointError, match="boom"):
        graph.capture(failing_step)
    assert log[-5:] == [
        "end capture",
        "private pool off",
        "own cuBLAS handle off",
        "leave own",
        "current waits for event on own",
    ]
    with pytest.raises(RuntimeError, match="before capture"):
        graph.replay()
