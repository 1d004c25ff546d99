"""One training step, written out (`optimisation_step`), and the ways `Trainer.fit` runs it behind
one interface: plain, replayed from a CUDA graph, or data-parallel across MPI ranks. An epoch asks
its step object which rows of each shuffled batch this process trains on (`rows`), runs the step
(`__call__`), and sums its per-epoch totals (`totals`) across processes where there are several.
A fit's callbacks that watch each step (see callbacks.py) are collected once per fit into a
`StepCallbacks`; without any, a step calls nothing."""

from __future__ import annotations

from typing import NamedTuple

from .cuda_graphs import CapturedStep
from .regularisation import clip_grad_norm

STEP_METHODS = ("on_step_begin", "on_before_optimizer_step", "on_step_end")


class StepCallbacks(NamedTuple):
    """The bound per-step methods of a fit's callbacks, each `method(trainer)`, in the callbacks' order."""

    begin: tuple
    before_optimizer_step: tuple
    end: tuple


def step_callbacks(callbacks) -> StepCallbacks | None:
    """The per-step methods (STEP_METHODS) of `callbacks`; None when no callback has any."""
    found = StepCallbacks(*(tuple(getattr(c, name) for c in callbacks if hasattr(c, name)) for name in STEP_METHODS))
    return found if any(found) else None


def optimisation_step(trainer, x, y, share=None, callbacks=None):
    """One optimisation step of `trainer` (model, loss, optimiser) on the batch (x, y); returns the
    batch loss and the model's outputs (on device). Data-parallel (a communicator), (x, y) is this
    rank's part of a global batch and `share` its fraction of it (default: 1 / ranks): the
    gradients are averaged across ranks before the update. `callbacks` (a `StepCallbacks`, or
    None) are called before the forward, before `optimizer.step()` and after `zero_grad()`."""
    model = trainer.model
    if callbacks is not None:
        _call(callbacks.begin, trainer)
    output = model(x)
    value = trainer.loss.forward(output, y)
    model.run_backward(trainer.loss.backward(), input_grad=False)  # each layer adds dL/dW to W.grad
    if trainer.communicator is not None:
        share = 1 / trainer.communicator.size if share is None else share
        trainer.communicator.allreduce_gradients(model.parameters(), share)
    if trainer.penalty is not None:
        value = value + trainer.penalty.apply(model.parameters())
    if trainer.clip_norm is not None:
        clip_grad_norm(model.parameters(), trainer.clip_norm)
    if callbacks is not None:
        _call(callbacks.before_optimizer_step, trainer)
    trainer.optimizer.step()
    trainer.optimizer.zero_grad()
    if callbacks is not None:
        _call(callbacks.end, trainer)
    return value, output


def _call(methods, trainer):
    for method in methods:
        method(trainer)


class PlainStep:
    """`optimisation_step` on every whole batch, in this process, calling the per-step callbacks."""

    def __init__(self, trainer, callbacks=()):
        self.trainer, self.callbacks = trainer, step_callbacks(callbacks)

    def rows(self, index):
        """(the batch's row indices this process trains on, its share of the batch) or None to skip it."""
        return index, None

    def __call__(self, xb, yb, share):
        """(loss, outputs) of one optimisation step on the batch."""
        return optimisation_step(self.trainer, xb, yb, share, self.callbacks)

    def totals(self, totals, seen):
        """The epoch's loss (and metric) sums and the samples seen, over every process."""
        return totals, seen


class GraphStep(PlainStep):
    """Full-size batches replayed from a CUDA graph (`CapturedStep`); a smaller last batch eagerly."""

    def __init__(self, trainer, batch_size: int, callbacks=()):
        super().__init__(trainer, callbacks)
        if self.callbacks is not None:  # a replayed step runs no Python
            raise ValueError(
                "cuda_graph=True replays recorded steps, which cannot call a callback's per-step methods "
                f"({', '.join(STEP_METHODS)}, e.g. a Monitor's): fit without cuda_graph, or without that callback"
            )
        self.captured, self.batch_size = CapturedStep(trainer), batch_size

    def __call__(self, xb, yb, share):
        if xb.shape[0] == self.batch_size:
            return self.captured(xb, yb)
        return super().__call__(xb, yb, share)


class CheckedStep(PlainStep):
    """`optimisation_step` with a check after each stage, for the re-run of an epoch that diverged.

    `watch` (a `diynn.inspection.divergence.Watch`, which holds a forward and a backward hook on
    every module) raises NonFinite at the first NaN or infinity, before that step's update. The
    per-step callbacks are not called again; a data-parallel run is not re-run.
    """

    def __init__(self, trainer, watch):
        super().__init__(trainer)
        self.watch = watch

    def __call__(self, xb, yb, share):
        trainer, model, watch = self.trainer, self.trainer.model, self.watch
        watch.batch(xb)
        output = model(xb)  # the hooks check each module's output
        value = watch.loss_value(trainer.loss.forward(output, yb), output, yb)
        model.run_backward(watch.loss_gradient(trainer.loss.backward()), input_grad=False)  # and each gradient
        if trainer.penalty is not None:
            value = value + trainer.penalty.apply(model.parameters())
        if trainer.clip_norm is not None:
            clip_grad_norm(model.parameters(), trainer.clip_norm)
        watch.gradients(value)
        trainer.optimizer.step()
        watch.updated(trainer.optimizer, value)
        trainer.optimizer.zero_grad()
        return value, output


class DataParallelStep(PlainStep):
    """Each rank trains on its part of every global batch; the step averages the gradients across
    ranks (Trainer.step with a communicator), and the epoch's totals and buffers are combined."""

    def __init__(self, trainer, batch_size: int, samples: int, callbacks=()):
        super().__init__(trainer, callbacks)
        self.communicator = comm = trainer.communicator
        if min(batch_size, samples) < comm.size:  # every rank needs a sample of every batch
            raise ValueError(
                f"data-parallel fit on {comm.size} ranks needs batches of at least {comm.size} samples, "
                f"got batch_size={batch_size} and {samples} samples"
            )
        comm.broadcast_model(trainer.model)  # every rank starts from rank 0's weights

    def rows(self, index):
        if index.shape[0] < self.communicator.size:  # a last batch too small to share out is left out
            return None
        local = self.communicator.shard(index)
        return local, local.shape[0] / index.shape[0]

    def totals(self, totals, seen):
        xp = self.trainer.backend.xp
        combined = self.communicator.sum(
            xp.concat([totals, xp.asarray([seen], dtype=totals.dtype, device=totals.device)])
        )
        self.communicator.average_buffers(self.trainer.model)
        return combined[:-1], int(combined[-1])


def training_step(trainer, batch_size: int, samples: int, cuda_graph: bool, callbacks=()) -> PlainStep:
    """The step object for a fit: data-parallel with a communicator, a CUDA graph when asked, else
    plain; it calls the per-step methods of `callbacks` (the fit's callbacks)."""
    if trainer.communicator is not None:
        if cuda_graph:
            raise ValueError("cuda_graph=True and data-parallel training (a communicator) do not combine")
        return DataParallelStep(trainer, batch_size, samples, callbacks)
    return GraphStep(trainer, batch_size, callbacks) if cuda_graph else PlainStep(trainer, callbacks)
