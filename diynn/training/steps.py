"""One training step, written out (`optimisation_step`), and the ways `Trainer.fit` runs it behind
one interface: plain, replayed from a CUDA graph, or data-parallel across MPI ranks. An epoch asks
its step object which rows of each shuffled batch this process trains on (`rows`), runs the step
(`__call__`), and sums its per-epoch totals (`totals`) across processes where there are several."""

from __future__ import annotations

from .cuda_graphs import CapturedStep
from .regularisation import clip_grad_norm


def optimisation_step(trainer, x, y, share=None):
    """One optimisation step of `trainer` (model, loss, optimiser) on the batch (x, y); returns the
    batch loss and the model's outputs (on device). Data-parallel (a communicator), (x, y) is this
    rank's part of a global batch and `share` its fraction of it (default: 1 / ranks): the
    gradients are averaged across ranks before the update."""
    model = trainer.model
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
    trainer.optimizer.step()
    trainer.optimizer.zero_grad()
    return value, output


class PlainStep:
    """`optimisation_step` on every whole batch, in this process."""

    def __init__(self, trainer):
        self.trainer = trainer

    def rows(self, index):
        """(the batch's row indices this process trains on, its share of the batch) or None to skip it."""
        return index, None

    def __call__(self, xb, yb, share):
        """(loss, outputs) of one optimisation step on the batch."""
        return optimisation_step(self.trainer, xb, yb, share)

    def totals(self, totals, seen):
        """The epoch's loss (and metric) sums and the samples seen, over every process."""
        return totals, seen


class GraphStep(PlainStep):
    """Full-size batches replayed from a CUDA graph (`CapturedStep`); a smaller last batch eagerly."""

    def __init__(self, trainer, batch_size: int):
        super().__init__(trainer)
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

    def __init__(self, trainer, batch_size: int, samples: int):
        super().__init__(trainer)
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


def training_step(trainer, batch_size: int, samples: int, cuda_graph: bool) -> PlainStep:
    """The step object for a fit: data-parallel with a communicator, a CUDA graph when asked, else plain."""
    if trainer.communicator is not None:
        if cuda_graph:
            raise ValueError("cuda_graph=True and data-parallel training (a communicator) do not combine")
        return DataParallelStep(trainer, batch_size, samples)
    return GraphStep(trainer, batch_size) if cuda_graph else PlainStep(trainer)
