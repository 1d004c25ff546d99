"""Early stopping and the callbacks' methods around fit (diynn/training/callbacks.py)."""

import numpy as np
import pytest

import diynn
from diynn import EarlyStopping


def test_early_stopping_restores_the_best_epoch(numpy_rng):
    x = numpy_rng.normal(size=(64, 3)).astype(np.float32)
    y = numpy_rng.integers(0, 2, size=64)  # noise: validation loss gets worse as the model overfits
    model = diynn.mlp([3, 64, 2], rng=0)
    trainer = diynn.Trainer(model, diynn.CrossEntropyLoss(), diynn.Adam(model.parameters(), lr=0.05))
    snapshots = []
    stopper = EarlyStopping(model, monitor="val_loss", patience=2)
    history = trainer.fit(
        x[:32],
        y[:32],
        epochs=50,
        batch_size=8,
        validation_data=(x[32:], y[32:]),
        progress=False,
        callbacks=[stopper, lambda epoch, h: snapshots.append(model.state_dict())],
    )
    best = int(np.argmin(history["val_loss"])) + 1
    assert history["best_epoch"] == best and len(history["loss"]) == best + 2 < 50
    to_numpy = model.backend.to_numpy
    for name, value in model.state_dict().items():
        np.testing.assert_array_equal(to_numpy(value), to_numpy(snapshots[best - 1][name]))


def test_per_step_methods_run_around_the_optimiser_step(numpy_rng):
    x = numpy_rng.normal(size=(20, 3)).astype(np.float32)
    y = numpy_rng.integers(0, 2, size=20)
    model = diynn.mlp([3, 4, 2], rng=0)
    weight = model[0].weight
    seen = []

    class Watch:  # per-step methods only: a callback need not be callable
        def on_step_begin(self, trainer):
            seen.append(("begin", weight.grad is None))

        def on_before_optimizer_step(self, trainer):
            self.before = np.array(weight.data, copy=True)
            seen.append(("before", weight.grad is not None))

        def on_step_end(self, trainer):
            seen.append(("end", weight.grad is None and not np.array_equal(self.before, weight.data)))

    trainer = diynn.Trainer(model, diynn.CrossEntropyLoss(), diynn.SGD(model.parameters(), lr=0.1))
    trainer.fit(x, y, epochs=2, batch_size=8, progress=False, callbacks=[Watch()])
    assert seen == [("begin", True), ("before", True), ("end", True)] * 6  # 3 steps an epoch
    trainer.step(trainer.prepare(x, y)[0][:8], trainer.prepare(x, y)[1][:8])  # outside fit: none called
    assert len(seen) == 18


def test_per_step_methods_and_cuda_graphs_do_not_combine():
    model = diynn.mlp([3, 2], rng=0)
    trainer = diynn.Trainer(model, diynn.CrossEntropyLoss(), diynn.SGD(model.parameters(), lr=0.1))
    with pytest.raises(ValueError, match="per-step methods"):
        trainer.fit(np.zeros((4, 3)), np.zeros(4, dtype=int), cuda_graph=True, callbacks=[diynn.Monitor()])


def test_on_exception_runs_instead_of_on_train_end_where_fit_raises(numpy_rng):
    x = numpy_rng.normal(size=(16, 3)).astype(np.float32)
    y = numpy_rng.integers(0, 2, size=16)
    model = diynn.mlp([3, 2], rng=0)
    seen = []

    class Ends:
        def __call__(self, epoch, history):
            if epoch == 2:
                raise KeyboardInterrupt

        def on_train_end(self, history):
            seen.append("end")

        def on_exception(self, error):
            seen.append(type(error).__name__)

    trainer = diynn.Trainer(model, diynn.CrossEntropyLoss(), diynn.SGD(model.parameters(), lr=0.1))
    assert len(trainer.fit(x, y, epochs=1, batch_size=8, progress=False, callbacks=[Ends()])["loss"]) == 1
    with pytest.raises(KeyboardInterrupt):  # the error goes on, after the callback has seen it
        trainer.fit(x, y, epochs=3, batch_size=8, progress=False, callbacks=[Ends()])
    assert seen == ["end", "KeyboardInterrupt"]
