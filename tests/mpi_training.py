"""Run under `mpiexec -n 2` by tests/training/test_distributed.py: data-parallel training of small models
on fixed data, one after the other in the same job (starting one costs more than training these);
each rank saves each model's final state (and the history) to <out>/<kind>-rank<r>.npz.

    mpiexec -n 2 python tests/mpi_training.py OUT {mlp,cnn,resnet,die,kill,nccl} [more kinds]

nccl: the MLP on the active backend (DIYNN_BACKEND=cupy) with `communicator(backend)`, NCCL's.
"""

import json
import os
import signal
import sys
from pathlib import Path

import numpy as np

import diynn
from diynn.training.distributed import Communicator, communicator


def data(model_kind):
    rng = np.random.default_rng(0)
    shape = (90, 12) if model_kind == "mlp" else (90, 1, 8, 8)
    return rng.normal(size=shape).astype(np.float32), rng.integers(0, 3, 90)


def model_for(kind, seed):
    if kind == "mlp":
        return diynn.mlp([12, 16, 3], rng=seed)
    if kind == "resnet":  # branches: a residual block with a strided 1x1 shortcut, one without
        return diynn.resnet(widths=(4, 8), blocks=1, classes=3, rng=seed)
    return diynn.Sequential(
        diynn.Conv2d(1, 4, 3, padding=1, rng=seed),
        diynn.BatchNorm2d(4),
        diynn.ReLU(),
        diynn.MaxPool2d(2),
        diynn.Flatten(),
        diynn.Linear(64, 3, rng=seed + 1),
    )


def train(kind, communicator=None, seed=0, callbacks=()):
    model = model_for(kind if kind in ("cnn", "resnet") else "mlp", seed)
    trainer = diynn.Trainer(
        model, diynn.CrossEntropyLoss(), diynn.Adam(model.parameters(), lr=0.01), communicator=communicator
    )
    x, y = data(kind if kind in ("cnn", "resnet") else "mlp")
    history = trainer.fit(x, y, epochs=3, batch_size=15, seed=0, progress=False, callbacks=callbacks)
    return model, history


def main():
    out, kinds = Path(sys.argv[1]), sys.argv[2:]
    ranks = communicator(diynn.get_backend()) if "nccl" in kinds else Communicator()
    ranks.abort_on_exception()
    for kind in kinds:
        callbacks = ()
        if kind in ("die", "kill"):

            def die(epoch, history, kind=kind):
                if ranks.rank == 1 and epoch == 2:
                    if kind == "kill":  # no Python error to catch: the process is gone
                        os.kill(os.getpid(), signal.SIGKILL)
                    raise RuntimeError("rank 1 fails on purpose")

            callbacks = (die,)
        # each rank starts from other weights: the broadcast from rank 0 must make them equal
        model, history = train(kind, ranks, seed=ranks.rank, callbacks=callbacks)
        backend = model.backend
        state = {name.replace(".", "/"): backend.to_numpy(value) for name, value in model.state_dict().items()}
        np.savez(out / f"{kind}-rank{ranks.rank}.npz", history=json.dumps(history), **state)


if __name__ == "__main__":
    main()
