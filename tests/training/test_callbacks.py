"""Early stopping (diynn/training/callbacks.py)."""

import numpy as np

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
