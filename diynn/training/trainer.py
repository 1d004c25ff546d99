"""The generic optimiser: a `Trainer` ties a model, a loss and an optimiser, does a training step
on a batch, and runs `fit` over shuffled mini-batches with validation and a history."""

from __future__ import annotations

import contextlib
import math
import sys
import time

from .. import arguments
from ..backends import backend_of, get_backend
from ..grad_mode import no_grad
from ..inspection import divergence
from ..inspection.divergence import EpochStart
from .checkpoint import TrainingState
from .progress import progress_bar
from .steps import CheckedStep, optimisation_step, training_step

# Batches for evaluation and prediction: large enough that the per-batch Python cost vanishes. An
# evaluation keeps no cache, so only one layer's buffers live at a time: predict on 10,000 images
# through the default CNN peaks at 94 MiB traced (190 MiB when the layers kept their last call).
EVALUATION_BATCH = 256


class TrainingDiverged(FloatingPointError):
    """The loss became NaN or infinite."""


class StopTraining(Exception):
    """Raised by an epoch callback to end `fit` early (the history so far is kept)."""


class Trainer:
    """model + loss + optimiser: training steps, `fit` over mini-batches, evaluation and prediction.

    Args:
        model: the Module to train.
        loss: a Loss (e.g. CrossEntropyLoss).
        optimizer: an Optimizer over the model's parameters.
        metric: "accuracy" (default) also tracks classification accuracy (argmax of the outputs
            against integer labels or one-hot targets); None tracks the loss alone.
        clip_norm: clip the gradients' global norm to this (see `clip_grad_norm`); None: no clipping.
        penalty: an L1L2 whose weight penalties are added to the loss; None: none.
        communicator: a `diynn.distributed.Communicator` to train data-parallel across MPI ranks.

    Raises:
        ValueError: an unknown metric.
    """

    def __init__(
        self, model, loss, optimizer, metric: str | None = "accuracy", clip_norm=None, penalty=None, communicator=None
    ):
        if metric not in (None, "accuracy"):
            raise ValueError(f"unknown metric {metric!r}; valid: 'accuracy' or None")
        self.model, self.loss, self.optimizer, self.metric = model, loss, optimizer, metric
        self.clip_norm, self.penalty, self.communicator = clip_norm, penalty, communicator

    @property
    def dtype(self):
        """The model's dtype (its first parameter's): data given to fit / evaluate are converted to it."""
        return self.model.parameters()[0].data.dtype

    @property
    def backend(self):
        """Where the model's parameters live: data given to fit / evaluate go there."""
        return self.model.backend or get_backend()

    def step(self, x, y, share=None):
        """One optimisation step on a batch: forward, loss, backward and the optimiser's update.

        Args:
            x: a batch of inputs (N, ...), a backend array of the model's dtype.
            y: its targets (N,) or (N, ...), or None for a loss that needs none.
            share: data-parallel only: this rank's fraction of the global batch (default:
                1 / ranks); (x, y) is then this rank's part, and the gradients are averaged across
                ranks.

        Returns:
            (loss, output): the batch's loss (0-d, the penalty included) and the model's outputs, left
                on the device.
        """
        return optimisation_step(self, x, y, share)

    def fit(
        self,
        x,
        y,
        *,
        epochs: int = 10,
        batch_size: int = 64,
        validation_data: tuple | None = None,
        seed: int | None = 0,
        progress: bool | None = None,
        callbacks=(),
        augment=None,
        cuda_graph: bool = False,
        checkpoint=None,
        resume=None,
    ) -> dict:
        """Train for `epochs` passes over (x, y) in shuffled mini-batches.

        Args:
            x: (N, ...) features (any backend, or nested lists), converted once to the model's dtype; ids stay integers.
            y: (N,) labels or (N, ...) targets; None for a loss that needs none (NTXentLoss, metric None).
            epochs: passes over the data.
            batch_size: samples per step.
            validation_data: (x_val, y_val), evaluated after each epoch.
            seed: seeds the shuffling (None: unseeded).
            progress: None: a bar on a terminal or in Jupyter, and a line per epoch; True: both; False: neither.
            callbacks: `fn(epoch, history)` each epoch, may raise StopTraining; `on_train_end`, per-step: callbacks.py.
            augment: `augment(x_batch)` transforms each training batch (e.g. `TwoViews(...)`).
            cuda_graph: replay the full-size batches' steps from a CUDA graph (CuPy; see CapturedStep).
            checkpoint: a path: the training state is saved there after each epoch.
            resume: a path: continue the run checkpointed there (with the same arguments).

        Returns:
            history: per-epoch lists of "loss", "time" and, if measured, "accuracy", "val_loss", "val_accuracy".

        Raises:
            TrainingDiverged: the loss or the weights became NaN or infinite; it names where that began.
        """
        epochs, batch_size = arguments.integer("epochs", epochs), arguments.integer("batch_size", batch_size)
        x, y, validation_data = self._fit_data(x, y, validation_data, cuda_graph)
        step = training_step(self, batch_size, x.shape[0], cuda_graph, callbacks)
        if self.communicator is not None:
            seed, progress = self._data_parallel(seed, progress, checkpoint, resume)
        rng, steps = self.backend.rng(seed), range(math.ceil(x.shape[0] / batch_size))
        state = TrainingState(self, rng, augment, callbacks, (x, y), validation_data is not None)
        first, history = state.restore(resume, epochs) if resume is not None else (1, {"loss": [], "time": []})
        with _ending(callbacks, history):  # on_train_end, or on_exception where an epoch raised
            for epoch in range(first, epochs + 1):
                began, order = time.perf_counter(), rng.permutation(x.shape[0])
                bar = progress_bar(steps, progress, desc=f"epoch {epoch}/{epochs}", leave=False)
                self._train_epoch(step, x, y, order, batch_size, augment, bar, epoch, history, state)
                if validation_data is not None:
                    self._validate(validation_data, batch_size, epoch, history)
                _log_epoch(history, time.perf_counter() - began, f"epoch {epoch}/{epochs}", progress)
                stopped = _stopped_by(callbacks, epoch, history)
                if checkpoint is not None:
                    state.save(checkpoint, epoch, history, stopped)
                if stopped:
                    break
        return history

    def _data_parallel(self, seed, progress, checkpoint, resume):
        """(seed, progress) of a data-parallel fit: rank 0's seed, so that every rank draws the same
        shuffled order, and a progress bar on rank 0 only."""
        if checkpoint is not None or resume is not None:
            raise ValueError("checkpoint and resume are not supported with data-parallel training yet")
        return self.communicator.broadcast_object(seed), progress if self.communicator.rank == 0 else False

    def _fit_data(self, x, y, validation_data, cuda_graph):
        """(x, y, validation_data) prepared once for fit; a clear error where targets are missing
        that the loss or metric needs, or given where none are wanted."""
        if y is None and (self.metric or validation_data is not None or cuda_graph):
            raise ValueError(
                "fit(x, None) trains without targets (a self-supervised loss such as NTXentLoss): "
                "it needs metric=None and takes no validation_data or cuda_graph"
            )
        if y is None and getattr(self.loss, "needs_target", True):
            raise ValueError(
                f"{type(self.loss).__name__} compares predictions with targets: give fit the targets y, "
                "or use a loss without targets (NTXentLoss) for fit(x, None)"
            )
        if validation_data is not None:
            if not isinstance(validation_data, (tuple, list)) or len(validation_data) != 2:
                raise TypeError("validation_data must be a pair (x_val, y_val)")
            validation_data = self.prepare(*validation_data, name="validation_data")
        return (*self.prepare(x, y), validation_data)

    def _train_epoch(self, step, x, y, order, batch_size, augment, bar, epoch, history, state=None):
        """One pass over the shuffled rows `order` in batches; appends the epoch's mean loss (and
        accuracy) to `history`, reading the device once.

        Where a step's loss or, at the end, a weight is not finite, the epoch is run again from its
        start (an EpochStart, kept on the device) with each stage of each step checked, and
        TrainingDiverged names where the first NaN or infinity arose.
        """
        start = EpochStart(self, state.generators if state else {}) if self.communicator is None else None
        with self.backend.float_errors_ignored():  # a NaN or an infinity is reported below, where it arose
            totals, seen, done = self._run_epoch(step, x, y, order, batch_size, augment, bar)
        diverged = _divergence(totals[:done], totals[done], epoch, batch_size, x.shape[0])
        if diverged is not None:
            text, detected = diverged
            raise TrainingDiverged(text + self._origin(start, detected, x, y, order, batch_size, augment, history))
        history["loss"].append(float(totals[:done].sum()) / seen)
        if self.metric:
            history.setdefault("accuracy", []).append(float(totals[done + 1]) / seen)

    def _run_epoch(self, step, x, y, order, batch_size, augment, bar):
        """The steps of one epoch; (host totals: the step losses times their samples, the parameters'
        check (NaN where one is not finite), the correct count; the samples seen; the number of steps)."""
        xp, n = self.backend.xp, x.shape[0]
        self.model.train()
        losses, correct, seen = [], [], 0
        for batch in bar if bar is not None else range(math.ceil(n / batch_size)):
            rows = step.rows(order[batch * batch_size : min(n, (batch + 1) * batch_size)])
            if rows is None:
                continue
            index, share = rows
            xb, yb = xp.take(x, index, axis=0), None if y is None else xp.take(y, index, axis=0)
            value, output = step(augment(xb) if augment is not None else xb, yb, share)
            losses.append(value * index.shape[0])  # samples drawn (an augmentation may add views)
            seen += index.shape[0]
            if self.metric:
                correct.append(count_correct(output, yb))
        totals = xp.stack(losses)  # one transfer per epoch: the step losses, the weights' check, the correct count
        totals = xp.concat([totals, _parameters_check(self.model, totals.dtype)])
        if self.metric:
            totals = xp.concat([totals, xp.reshape(xp.astype(xp.sum(xp.stack(correct)), totals.dtype), (1,))])
        totals, seen = step.totals(totals, seen)
        return self.backend.to_numpy(totals), seen, len(losses)

    def _origin(self, start, detected, x, y, order, batch_size, augment, history) -> str:
        """Where the epoch's first NaN or infinity arose (the end of a TrainingDiverged message): the
        epoch re-run from `start` with each stage checked (`detected`: the step whose loss was not
        finite, or None)."""
        if start is None:  # data-parallel: a re-run would need every rank
            return f"; {divergence.LEARNING_RATE}"
        start.restore()
        watch = divergence.Watch(self.model, self.loss, first_update=not history["loss"], losses=history["loss"])
        try:
            with self.backend.float_errors_ignored(), watch:
                self._run_epoch(CheckedStep(self, watch), x, y, order, batch_size, augment, None)
        except divergence.NonFinite as found:
            return divergence.located(found, watch.step, detected)
        return (
            "; re-run from the epoch's start with a check after each module, it stayed finite (a random draw "
            f"or a layer's state differed), so where it began is not known; {divergence.LEARNING_RATE} (on the "
            "GPU, a class label outside the model's outputs also gives a NaN loss)"
        )

    def _validate(self, validation_data, batch_size, epoch, history):
        """Append the validation loss (and accuracy) to `history`; TrainingDiverged if it is not finite."""
        for name, value in self.evaluate(*validation_data, batch_size=max(batch_size, EVALUATION_BATCH)).items():
            history.setdefault(f"val_{name}", []).append(value)
        if not math.isfinite(history["val_loss"][-1]):
            raise TrainingDiverged(
                f"validation loss became {history['val_loss'][-1]} at epoch {epoch} (the validation data "
                "are finite: the model diverged); try a smaller learning rate"
            )

    def prepare(self, x, y, name="fit"):
        """(x, y) as backend arrays on the model's backend, checked once.

        Each conversion, and the check that the data are non-empty, of matching lengths and finite,
        happens here, once.

        Args:
            x: (N, ...) features: an array of any backend, or nested lists of numbers.
            y: (N,) integer labels or (N, ...) real targets, or None.
            name: names the data in errors.

        Returns:
            (x, y): x in the model's dtype (integer x stays integer where the model takes token ids,
                `model.takes_indices`); integer labels as
                int64, other targets in the model's dtype (y None stays None).

        Raises:
            TypeError: data that are not numeric.
            ValueError: no samples, mismatched lengths, or a NaN or infinite value.
        """
        backend = self.backend
        xp = backend.xp
        x = _on(backend, x, self.dtype, f"{name}: x", self.model.takes_indices)
        if y is None:  # a loss without targets
            _check_samples(x, f"{name}: x")
            return x, None
        y = _on(backend, y, None, f"{name}: y")
        if y.ndim == 0 or x.ndim == 0:
            raise ValueError(f"{name}: x and y need a sample axis, got shapes {tuple(x.shape)} and {tuple(y.shape)}")
        if xp.isdtype(y.dtype, "integral"):
            y = xp.astype(y, xp.int64, copy=False)
        elif xp.isdtype(y.dtype, "real floating"):
            y = xp.astype(y, self.dtype, copy=False)
        else:
            raise TypeError(f"{name}: y must hold integer labels or real targets, got dtype {y.dtype}")
        if x.shape[0] != y.shape[0]:
            raise ValueError(f"{name}: x has {x.shape[0]} samples but y has {y.shape[0]}")
        _check_samples(x, f"{name}: x")
        if xp.isdtype(y.dtype, "real floating"):
            _check_samples(y, f"{name}: y")
        return x, y

    def evaluate(self, x, y, batch_size: int = EVALUATION_BATCH) -> dict:
        """Mean loss (and accuracy) over (x, y) in eval mode, with one transfer to the host.

        Args:
            x: (N, ...) features, converted to the model's dtype and backend.
            y: (N,) labels or (N, ...) targets.
            batch_size: samples per forward.

        Returns:
            metrics: {"loss": float} and, with metric "accuracy", "accuracy".
        """
        backend = self.backend
        xp = backend.xp
        batch_size = arguments.integer("batch_size", batch_size)
        x, y = self.prepare(x, y, name="evaluate")
        losses, correct = [], []
        with evaluating(self.model):
            for start in range(0, x.shape[0], batch_size):
                stop = min(x.shape[0], start + batch_size)
                xb, yb = x[start:stop, ...], y[start:stop, ...]
                output = self.model(xb)
                losses.append(self.loss.forward(output, yb) * xb.shape[0])
                if self.metric:
                    correct.append(count_correct(output, yb))
        totals = [xp.sum(xp.stack(losses))]
        if self.metric:
            totals.append(xp.astype(xp.sum(xp.stack(correct)), totals[0].dtype))
        totals = backend.to_numpy(xp.stack(totals))
        result = {"loss": float(totals[0]) / x.shape[0]}
        if self.metric:
            result["accuracy"] = float(totals[1]) / x.shape[0]
        return result

    def predict(self, x, batch_size: int = EVALUATION_BATCH):
        """`predict(self.model, x, batch_size)`: the model's outputs in eval mode."""
        return predict(self.model, x, batch_size)


def count_correct(output, target):
    """Number of rows where argmax(output) equals the label (or argmax of a one-hot target)."""
    xp = backend_of(output).xp
    labels = target if target.ndim == 1 else xp.argmax(target, axis=1)
    return xp.sum(xp.astype(xp.argmax(output, axis=1) == labels, xp.int64))


def predict(model, x, batch_size: int = EVALUATION_BATCH):
    """model(x) in eval mode, in batches, keeping nothing for a backward (the model's mode is restored).

    Args:
        model: a Module.
        x: (N, ...) inputs (any backend, or nested lists), converted to the model's backend and to
            its dtype (integer token ids stay integers where the model takes them, `model.takes_indices`).
        batch_size: samples per forward.

    Returns:
        y: the outputs (N, ...), on the model's backend.
    """
    backend = model.backend or get_backend()
    xp = backend.xp
    batch_size = arguments.integer("batch_size", batch_size)
    x = _on(backend, x, model.parameters()[0].data.dtype, "predict: x", model.takes_indices)
    _check_samples(x, "predict: x")
    with evaluating(model):
        n = x.shape[0]
        outputs = [model(x[start : min(n, start + batch_size), ...]) for start in range(0, n, batch_size)]
    return xp.concat(outputs, axis=0)


@contextlib.contextmanager
def evaluating(model):
    """Run a block with `model` in eval mode and nothing kept for a backward (neither the model's
    caches nor the loss's), then restore its previous mode."""
    was_training = model.training
    model.eval()
    try:
        with no_grad():
            yield model
    finally:
        model.train(was_training)


def accuracy(model, x, y, batch_size: int = EVALUATION_BATCH) -> float:
    """Fraction of samples whose predicted class (argmax of the outputs) equals label y.

    Args:
        model: a classifier, x -> (N, classes) scores.
        x: (N, ...) inputs, converted to the model's dtype and backend.
        y: (N,) integer labels.
        batch_size: samples per forward.

    Returns:
        accuracy: a float in [0, 1].

    Raises:
        ValueError: y is not (N,) integer labels, or not one per sample.
    """
    backend = model.backend or get_backend()
    labels = _on(backend, y, None, "accuracy: y")
    if labels.ndim != 1 or not backend.xp.isdtype(labels.dtype, "integral"):
        raise ValueError(f"accuracy: y must be integer labels (N,), got shape {tuple(labels.shape)} {labels.dtype}")
    samples = x.shape[0] if hasattr(x, "shape") else len(x)
    if labels.shape[0] != samples:
        raise ValueError(f"accuracy: x has {samples} samples but y has {labels.shape[0]}")
    return float(backend.to_numpy(count_correct(predict(model, x, batch_size), labels))) / labels.shape[0]


def _on(backend, values, dtype=None, name="data", indices=False):
    """`values` (an array of any backend, or nested lists of numbers) as an array of `backend`,
    converted to `dtype` (the model's) where one is given, except integers where the model takes
    `indices` (an Embedding's token ids stay integers)."""
    source = backend_of(values) if hasattr(values, "__array_namespace__") or hasattr(values, "ndim") else None
    if source is not None and source is not backend:
        values = source.to_numpy(values)
    try:
        array = backend.asarray(values)
    except (TypeError, ValueError, OverflowError) as error:
        raise TypeError(f"{name} must be numeric array data, got {type(values).__name__} ({error})") from None
    xp = backend.xp
    if not xp.isdtype(array.dtype, ("integral", "real floating", "bool")):
        raise TypeError(f"{name} must be numeric array data, got dtype {array.dtype}")
    if dtype is not None and not (indices and xp.isdtype(array.dtype, "integral")):
        array = xp.astype(array, dtype, copy=False)
    return array


def _check_samples(array, name):
    """Raise ValueError if `array` holds no samples or a NaN / infinite value (one host read)."""
    if array.ndim == 0 or array.shape[0] == 0:
        raise ValueError(f"{name} holds no samples (shape {tuple(array.shape)})")
    xp = backend_of(array).xp
    if not xp.isdtype(array.dtype, "real floating"):
        return
    finite = xp.isfinite(array)
    if not bool(xp.all(finite)):
        rows = xp.reshape(finite, (array.shape[0], -1))
        first = int(xp.argmax(xp.astype(~xp.all(rows, axis=1), xp.int8)))
        raise ValueError(
            f"{name} contains NaN or infinite values (first in sample {first}): the data, not the learning "
            "rate, is the problem; remove or impute those values before training"
        )


def _divergence(losses, parameters_check, epoch, batch_size, n):
    """(what went wrong, the step whose loss was not finite, counted from 0, or None) where a step's
    loss or, at the end of the epoch, a parameter is NaN or infinite (`parameters_check` not finite);
    None where all are finite."""
    bad = [step for step, value in enumerate(losses) if not math.isfinite(float(value))]
    if bad:
        first = bad[0]
        return (
            f"loss became {float(losses[first])} at epoch {epoch}, step {first + 1} of {len(losses)} "
            f"(samples {first * batch_size}..{min(n, (first + 1) * batch_size) - 1} of the shuffled epoch)",
            first,
        )
    if not math.isfinite(float(parameters_check)):
        return f"the weights became NaN or infinite in epoch {epoch}, whose losses were all finite", None
    return None


def _parameters_check(model, dtype):
    """0 where every parameter of the model is finite, NaN where one is not: a (1,) array of `dtype`
    left on the device (the sum of every parameter times 0: a single pass, and no overflow)."""
    xp = model.backend.xp
    return xp.reshape(xp.astype(sum(xp.sum(parameter.data * 0) for parameter in model.parameters()), dtype), (1,))


def _stopped_by(callbacks, epoch, history) -> bool:
    """Run each epoch callback (each callable one: a callback may watch steps only); True when one
    raised StopTraining."""
    try:
        for callback in callbacks:
            if callable(callback):
                callback(epoch, history)
    except StopTraining:
        return True
    return False


@contextlib.contextmanager
def _ending(callbacks, history):
    """Around fit's epochs: after them, `on_train_end(history)` of each callback that has one; where
    they raised (an error, KeyboardInterrupt), `on_exception(error)` instead (a Monitor takes its
    hooks off the model), and the error goes on."""
    try:
        yield
    except BaseException as error:
        for callback in callbacks:
            if hasattr(callback, "on_exception"):
                callback.on_exception(error)
        raise
    for callback in callbacks:
        if hasattr(callback, "on_train_end"):
            callback.on_train_end(history)


def _log_epoch(history, seconds, label, progress):
    """Record the epoch's time in `history` and, unless `progress` is False, print its line to stderr."""
    history["time"].append(seconds)
    if progress is not False:  # None: a bar on a terminal or in Jupyter and a line per epoch; True: both
        print(f"{label}: " + _summary(history), file=sys.stderr, flush=True)


def _summary(history):
    values = ", ".join(f"{key} {values[-1]:.4f}" for key, values in history.items() if key != "time")
    return f"{values}, {history['time'][-1]:.1f} s"
