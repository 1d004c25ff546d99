"""Callbacks for `Trainer.fit` (schedules live in schedules.py, `diynn.Monitor` in diynn/inspection/).

A callback is any object given in `fit(callbacks=[...])`; `fit` calls what it has of:

- `callback(epoch, history)` (a callable callback): after each epoch (and its validation); may
  raise StopTraining.
- `callback.on_train_end(history)`: once, when training ends (not after an exception).
- `callback.on_exception(error)`: once, where fit raises instead (an error, KeyboardInterrupt), before
  the error goes on: undo what the callback did to the model (a Monitor removes its hooks).
- Per step, each `method(trainer)`, collected once per fit (a fit without them calls nothing per step):
    - `on_step_begin(trainer)`: before the step's forward;
    - `on_before_optimizer_step(trainer)`: after the backward (and the gradients' averaging across
      ranks, the penalty and clipping), before `optimizer.step()`: each parameter's `.grad` holds
      the gradient the update will use, `.data` the weights before it;
    - `on_step_end(trainer)`: after `optimizer.step()` and `zero_grad()`: `.data` holds the updated
      weights.

  `fit(cuda_graph=True)` refuses callbacks with per-step methods (a replayed step runs no Python);
  `Trainer.step` outside a fit calls none.
"""

from __future__ import annotations

from .. import arguments
from .trainer import StopTraining


class BestValue:
    """The best value so far of one history entry; lower is better, except for accuracies."""

    def __init__(self, name: str, min_delta: float = 0.0):
        self.name, self.min_delta = name, min_delta
        self.maximise = name.endswith("accuracy")
        self.best = None

    def improved(self, history) -> bool:
        """Whether the latest value beats the best by more than `min_delta`; if so it becomes the best."""
        if self.name not in history:
            raise KeyError(f"monitored {self.name!r} is not in the history: {sorted(history)}")
        value = history[self.name][-1]
        if self.best is None or (value - self.best if self.maximise else self.best - value) > self.min_delta:
            self.best = value
            return True
        return False


class EarlyStopping:
    """Stop training when a monitored value stops improving; when training ends, restore the best weights.

    An epoch callback for `Trainer.fit(callbacks=[...])`: it raises StopTraining after `patience`
    epochs without an improvement, and at the end records "best_epoch" in the history. Lower is
    better, except for a name ending in "accuracy".

    Args:
        model: the model whose best weights are kept (a state_dict copy at each improvement).
        monitor: the history entry watched, e.g. "val_loss" or "val_accuracy".
        patience: the epochs without an improvement that stop training, >= 1.
        min_delta: an improvement is a change by more than this, >= 0.
        restore_best: load the best epoch's weights into the model when training ends.
    """

    def __init__(self, model, monitor="val_loss", patience=3, min_delta=0.0, restore_best=True):
        patience = arguments.integer("patience", patience)
        min_delta = arguments.real("min_delta", min_delta, low=0)
        self.model, self.monitor, self.patience = model, BestValue(monitor, min_delta), patience
        self.restore_best = restore_best
        self.best_epoch, self.best_state, self.bad_epochs = None, None, 0

    def __call__(self, epoch, history):
        if self.monitor.improved(history):
            self.best_epoch, self.bad_epochs = epoch, 0
            if self.restore_best:
                self.best_state = self.model.state_dict()
            return
        self.bad_epochs += 1
        if self.bad_epochs >= self.patience:
            raise StopTraining

    def on_train_end(self, history):
        """Restore the best weights (where `restore_best`) and record history["best_epoch"]."""
        if self.restore_best and self.best_state is not None:
            self.model.load_state_dict(self.best_state)
        history["best_epoch"] = self.best_epoch

    def state_dict(self) -> dict:
        """What a checkpoint keeps: the best epoch and value, the epochs since, the best weights."""
        return {
            "best_epoch": self.best_epoch,
            "bad_epochs": self.bad_epochs,
            "best": self.monitor.best,
            "best_state": self.best_state,
        }

    def load_state_dict(self, state: dict) -> None:
        """Continue from a `state_dict()`."""
        self.best_epoch, self.bad_epochs = state["best_epoch"], state["bad_epochs"]
        self.monitor.best, self.best_state = state["best"], state["best_state"]
