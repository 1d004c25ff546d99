"""A whole training step recorded as a CUDA graph (CuPy backend) and replayed with one launch:
for small batches, where launching the step's few dozen kernels one by one from Python takes
longer than running them."""

from __future__ import annotations

import contextlib

from ..backends import backend_of


class CapturedStep:
    """`trainer.step(x, y)` for batches of one shape, replayed from a CUDA graph.

    The first `warmup` calls are ordinary steps (they compile the kernels and create the
    optimiser's state); the next call records the step, and every call from then on copies its
    batch into the recording's input buffers and replays it. Each call is one training step and
    returns (loss, outputs) like Trainer.step, in buffers that the next call overwrites.

    What the recorded step reads from the host is fixed when it is recorded, so the optimiser's
    learning rate and step counts are moved to device memory first (see `scalars_on_device`);
    schedules keep working. Build a new CapturedStep after replacing parameter arrays (e.g.
    load_state_dict).

    Args:
        trainer: the Trainer whose `step` is recorded; its model on the CuPy backend.
        warmup: ordinary steps before the recording, >= 1.

    Raises:
        BackendError: a backend other than CuPy.
        ValueError: warmup < 1, or (when called) a batch of another shape or dtype than the recorded one.
    """

    def __init__(self, trainer, warmup: int = 2):
        if warmup < 1:  # a first step creates optimiser state: recorded, every replay would redo it
            raise ValueError(f"CapturedStep needs warmup >= 1 ordinary steps before recording, got {warmup}")
        self.trainer, self.warmup = trainer, warmup
        self.graph = trainer.backend.graph()
        self.calls = 0
        self.inputs = self.outputs = self.learning_rate = None

    def __call__(self, x, y):
        self._copy_inputs(x, y)
        self.calls += 1
        if self.calls <= self.warmup:
            return self.graph.run(lambda: self.trainer.step(*self.inputs))
        if self.outputs is None:
            self.learning_rate = scalars_on_device(self.trainer.optimizer, self.trainer.dtype)
            with self.learning_rate.installed():
                self.outputs = self.graph.capture(lambda: self.trainer.step(*self.inputs))
        self.learning_rate.refresh()
        self.graph.replay()
        return self.outputs

    def _copy_inputs(self, x, y):
        xp = backend_of(x).xp
        if self.inputs is None:
            self.inputs = (xp.empty_like(x), xp.empty_like(y))
        for static, given, name in zip(self.inputs, (x, y), "xy"):
            if given.shape != static.shape or given.dtype != static.dtype:
                raise ValueError(
                    f"CapturedStep was recorded for {name} of shape {tuple(static.shape)} and dtype "
                    f"{static.dtype}, got {tuple(given.shape)} {given.dtype}; use Trainer.step for other shapes"
                )
            static[...] = given


class DeviceLearningRate:
    """The optimiser's learning rate as a 0-d device array, refreshed from `optimizer.lr`
    (a host number that schedules may change) when that changes."""

    def __init__(self, optimizer, array):
        self.optimizer, self.array, self.value = optimizer, array, optimizer.lr

    def refresh(self):
        if self.optimizer.lr != self.value:
            self.array[...] = self.optimizer.lr  # a fill on the device: no transfer, no sync
            self.value = self.optimizer.lr

    @contextlib.contextmanager
    def installed(self):
        """Within the block the optimiser reads its learning rate from the device array."""
        self.optimizer.lr = self.array
        try:
            yield
        finally:
            self.optimizer.lr = self.value


def scalars_on_device(optimizer, dtype) -> DeviceLearningRate:
    """Move the numbers an optimiser step reads from the host to 0-d device arrays of `dtype`:
    the step counts in its state (updated in place on the device from then on), and a device
    copy of the learning rate, returned, for `installed()` while a graph records the step."""
    backend = backend_of(optimizer.parameters[0].data)
    for state in optimizer.state.values():
        for key, value in state.items():
            if isinstance(value, int | float) and not isinstance(value, bool):
                state[key] = backend.asarray(value, dtype=dtype)
    return DeviceLearningRate(optimizer, backend.asarray(optimizer.lr, dtype=dtype))
