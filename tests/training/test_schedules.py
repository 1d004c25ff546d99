import math

import numpy as np
import pytest

from diynn import SGD, CosineLR, ExponentialLR, Parameter, ReduceLROnPlateau, StepLR


def optimizer(lr=0.1):
    return SGD([Parameter(np.zeros(2))], lr=lr)


def rates_seen(schedule, epochs):
    """The rate in force during each epoch, as fit would apply it."""
    seen = []
    for epoch in range(1, epochs + 1):
        seen.append(schedule.optimizer.lr)
        schedule(epoch, {})
    return seen


def test_step_lr():
    assert rates_seen(StepLR(optimizer(), step_size=2, gamma=0.5), 5) == pytest.approx([0.1, 0.1, 0.05, 0.05, 0.025])


def test_exponential_lr():
    assert rates_seen(ExponentialLR(optimizer(), gamma=0.9), 4) == pytest.approx([0.1 * 0.9**e for e in range(4)])


def test_cosine_with_warmup():
    seen = rates_seen(CosineLR(optimizer(), epochs=10, warmup=2, min_lr=0.01), 10)
    expected = [0.05, 0.1] + [0.01 + 0.09 * (1 + math.cos(math.pi * k / 8)) / 2 for k in range(8)]
    assert seen == pytest.approx(expected)
    with pytest.raises(ValueError, match="warm-up"):
        CosineLR(optimizer(), epochs=3, warmup=3)


def test_reduce_on_plateau():
    schedule = ReduceLROnPlateau(opt := optimizer(), monitor="val_loss", factor=0.5, patience=1)
    losses = [1.0, 0.9, 0.95, 0.93, 0.97, 0.8]
    rates = []
    for epoch, _ in enumerate(losses, start=1):
        schedule(epoch, {"val_loss": losses[:epoch]})
        rates.append(opt.lr)
    assert rates == pytest.approx([0.1, 0.1, 0.1, 0.05, 0.05, 0.05])
