"""Epoch callbacks for `Trainer.fit` (schedules live in schedules.py)."""

from __future__ import annotations

from .train import StopTraining


class EarlyStopping:
    """Stop when `monitor` (e.g. "val_loss", "val_accuracy") has not improved by more than
    `min_delta` for `patience` epochs; when training ends, restore the best epoch's weights."""

    def __init__(self, model, monitor="val_loss", patience=3, min_delta=0.0, restore_best=True):
        self.model, self.monitor, self.patience, self.min_delta = model, monitor, patience, min_delta
        self.restore_best = restore_best
        self.maximise = monitor.endswith("accuracy")
        self.best, self.best_epoch, self.best_state, self.bad_epochs = None, None, None, 0

    def __call__(self, epoch, history):
        if self.monitor not in history:
            raise KeyError(f"EarlyStopping monitors {self.monitor!r}, which the history lacks: {sorted(history)}")
        value = history[self.monitor][-1]
        if self.best is None or (value - self.best if self.maximise else self.best - value) > self.min_delta:
            self.best, self.best_epoch, self.bad_epochs = value, epoch, 0
            if self.restore_best:
                self.best_state = self.model.state_dict()
            return
        self.bad_epochs += 1
        if self.bad_epochs >= self.patience:
            raise StopTraining

    def on_train_end(self, history):
        if self.restore_best and self.best_state is not None:
            self.model.load_state_dict(self.best_state)
        history["best_epoch"] = self.best_epoch
