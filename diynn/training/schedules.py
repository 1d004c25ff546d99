"""Learning-rate schedules: epoch callbacks for `Trainer.fit` that set `optimizer.lr`.

A schedule sets the rate of the first epoch when created, and after each epoch that of the
next. `rate(e)` is the rate of epoch e (0-based) as a formula, for the tests and plots.
"""

from __future__ import annotations

import math

from .. import arguments
from .callbacks import BestValue


class Schedule:
    """Base of the epoch-indexed schedules: subclasses give `rate(epoch)`.

    The schedule sets the optimiser's lr to rate(0) when created and to rate(e) after epoch e; pass
    it to `Trainer.fit(callbacks=[...])`.

    Args:
        optimizer: the optimiser whose `lr` it sets; its lr when the schedule is created is the base.

    Raises:
        TypeError: an optimizer without an lr.
    """

    def __init__(self, optimizer):
        if not hasattr(optimizer, "lr"):
            raise TypeError(f"{type(self).__name__} needs an optimiser (with an lr), got {type(optimizer).__name__}")
        self.optimizer = optimizer
        self.base_lr = optimizer.lr
        optimizer.lr = self.rate(0)

    def rate(self, epoch: int) -> float:
        """The learning rate of 0-based `epoch`, as a formula of `base_lr`."""
        raise NotImplementedError

    def __call__(self, epoch: int, history: dict) -> None:
        """After 1-based `epoch` has run: set the rate of the next one (the epoch callback)."""
        self.optimizer.lr = self.rate(epoch)

    def state_dict(self) -> dict:
        """What a checkpoint keeps: the base rate."""
        return {"base_lr": self.base_lr}

    def load_state_dict(self, state: dict) -> None:
        """Continue from a `state_dict()`."""
        self.base_lr = arguments.real("base_lr", state["base_lr"], low=0)


class StepLR(Schedule):
    """lr = base * gamma ** floor(e / step_size): the rate times gamma every step_size epochs.

    Args:
        optimizer: the optimiser whose `lr` it sets (its lr now is the base).
        step_size: epochs between two decays, >= 1.
        gamma: the factor, > 0.
    """

    def __init__(self, optimizer, step_size: int, gamma: float = 0.1):
        self.step_size = arguments.integer("step_size", step_size)
        self.gamma = arguments.real("gamma", gamma, low=0, low_open=True)
        super().__init__(optimizer)

    def rate(self, epoch):
        return self.base_lr * self.gamma ** (epoch // self.step_size)


class ExponentialLR(Schedule):
    """lr = base * gamma ** e.

    Args:
        optimizer: the optimiser whose `lr` it sets (its lr now is the base).
        gamma: the factor per epoch, > 0.
    """

    def __init__(self, optimizer, gamma: float):
        self.gamma = arguments.real("gamma", gamma, low=0, low_open=True)
        super().__init__(optimizer)

    def rate(self, epoch):
        return self.base_lr * self.gamma**epoch


class CosineLR(Schedule):
    """Linear warm-up over `warmup` epochs to base, then half a cosine down to `min_lr` at epoch `epochs`.

    lr = min + (base - min) (1 + cos(pi (e - warmup) / (epochs - warmup))) / 2 after the warm-up,
    base (e + 1) / warmup during it.

    Args:
        optimizer: the optimiser whose `lr` it sets (its lr now is the base).
        epochs: the epoch at which the rate reaches min_lr (and stays), >= 1.
        warmup: the warm-up's epochs, in [0, epochs).
        min_lr: the final rate, >= 0.

    Raises:
        ValueError: a warm-up not shorter than `epochs`.
    """

    def __init__(self, optimizer, epochs: int, warmup: int = 0, min_lr: float = 0.0):
        epochs, warmup = arguments.integer("epochs", epochs), arguments.integer("warmup", warmup, minimum=0)
        if not warmup < epochs:
            raise ValueError(f"warm-up must be in [0, epochs), got {warmup} of {epochs}")
        self.epochs, self.warmup, self.min_lr = epochs, warmup, arguments.real("min_lr", min_lr, low=0)
        super().__init__(optimizer)

    def rate(self, epoch):
        if epoch < self.warmup:
            return self.base_lr * (epoch + 1) / self.warmup
        progress = min(1.0, (epoch - self.warmup) / (self.epochs - self.warmup))
        return self.min_lr + (self.base_lr - self.min_lr) * (1 + math.cos(math.pi * progress)) / 2


class ReduceLROnPlateau:
    """Multiply lr by `factor` when a monitored value has stopped improving; never below `min_lr`.

    An epoch callback for `Trainer.fit(callbacks=[...])`. Lower is better, except for a name ending
    in "accuracy".

    Args:
        optimizer: the optimiser whose `lr` it lowers.
        monitor: the history entry watched, e.g. "val_loss".
        factor: the factor, in (0, 1).
        patience: the rate drops after more than this many epochs without an improvement.
        threshold: an improvement is a change by more than this, >= 0.
        min_lr: the lowest rate, >= 0.
    """

    def __init__(self, optimizer, monitor="val_loss", factor=0.1, patience=3, threshold=1e-4, min_lr=0.0):
        self.optimizer, self.monitor = optimizer, BestValue(monitor, arguments.real("threshold", threshold, low=0))
        self.factor = arguments.real("factor", factor, low=0, high=1, low_open=True, high_open=True)
        self.patience = arguments.integer("patience", patience, minimum=0)
        self.min_lr = arguments.real("min_lr", min_lr, low=0)
        self.bad_epochs = 0

    def __call__(self, epoch, history):
        if self.monitor.improved(history):
            self.bad_epochs = 0
            return
        self.bad_epochs += 1
        if self.bad_epochs > self.patience:
            self.optimizer.lr = max(self.min_lr, self.optimizer.lr * self.factor)
            self.bad_epochs = 0

    def state_dict(self) -> dict:
        """What a checkpoint keeps: the epochs since an improvement and the best value."""
        return {"bad_epochs": self.bad_epochs, "best": self.monitor.best}

    def load_state_dict(self, state: dict) -> None:
        """Continue from a `state_dict()`."""
        self.bad_epochs = arguments.integer("bad_epochs", state["bad_epochs"], minimum=0)
        self.monitor.best = state["best"]
