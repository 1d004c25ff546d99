"""Training checkpoints: everything `Trainer.fit` needs to continue an interrupted run exactly.

A checkpoint holds the model's parameters and buffers, the optimiser's state (moments, step
counts, learning rate), the state of each callback that has one (schedules, early stopping), the
position of every random stream involved (the shuffling, dropout and noise in the model, the
augmentation), the history, the last finished epoch, the training set's size and a digest of its
rows. It is one .npz file, the arrays as .npy members and the rest as JSON, read back with
allow_pickle=False and written atomically, so an interrupted write leaves the previous checkpoint
intact. Resumed on the same host at the same thread count, a run ends with bitwise the weights of an
uninterrupted one (the compiled kernels split their sums by thread).
"""

from __future__ import annotations

import functools
import hashlib
import json
import types
from pathlib import Path

import numpy as np

from ..backends import Generator, backend_of
from ..io.files import atomic_write
from ..io.model_files import error_message, read_npz

FORMAT = "diynn-checkpoint-1"
HOOKS = ("_forward_hooks", "_backward_hooks")  # a module's hooks are not part of its training state
_HEADER = "__checkpoint__"
DIGEST_ROWS = 64  # rows of the training set in its digest (hashing every row would cost a pass over it)


class CheckpointError(ValueError):
    """A checkpoint file that is unreadable, not a diynn checkpoint, or not of this training run."""


def generators_in(root, name: str) -> dict[str, Generator]:
    """Every random generator reachable from `root` through attributes, lists, dicts and the
    variables a function captures or names (an augmentation written as a function), by path
    (e.g. "model.5.rng" for a Dropout's): what a checkpoint saves and a resume restores."""
    found: dict[str, Generator] = {}
    seen: set[int] = set()

    def visit(value, where):
        if isinstance(value, Generator):
            found.setdefault(where, value)
        elif id(value) in seen or isinstance(value, (str, bytes, int, float, type)) or hasattr(value, "shape"):
            return
        elif isinstance(value, (list, tuple)):
            seen.add(id(value))
            for index, item in enumerate(value):
                visit(item, f"{where}[{index}]")
        elif isinstance(value, dict):
            seen.add(id(value))
            for key, item in value.items():
                visit(item, f"{where}.{key}")
        elif hasattr(value, "__dict__"):
            seen.add(id(value))
            for key, item in vars(value).items():
                if key not in HOOKS:
                    visit(item, f"{where}.{key.lstrip('_')}")
            code = getattr(value, "__code__", None)  # a function: the variables it captures or names
            if code is not None:
                for variable, cell in zip(code.co_freevars, value.__closure__ or ()):
                    visit(cell.cell_contents, f"{where}.{variable}")
                for variable in code.co_names:
                    used = value.__globals__.get(variable)
                    if used is not None and not isinstance(used, (types.ModuleType, type)):
                        visit(used, f"{where}.{variable}")

    visit(root, name)
    return found


class TrainingState:
    """What one `fit` saves after each epoch and restores on resume: the trainer's model and
    optimiser, the stateful callbacks, and the random generators of the shuffling (`shuffle`),
    the model and the augmentation; a resume is checked against the training set `data`, (x, y)."""

    def __init__(self, trainer, shuffle: Generator, augment, callbacks, data: tuple, validated: bool):
        self.trainer = trainer
        self.data = data  # (x, y), the training set: a resumed run must shuffle the same set
        self.samples = data[0].shape[0]
        self.validated = validated  # whether the run has validation data (its history then has val_ entries)
        self.callbacks = [callback for callback in callbacks if hasattr(callback, "state_dict")]
        self.generators = {"shuffle": shuffle, **generators_in(trainer.model, "model")}
        if augment is not None:
            self.generators.update(generators_in(augment, "augment"))

    @functools.cached_property
    def digest(self) -> str:
        """`data_digest` of the training set, taken when a checkpoint is first written or read."""
        return data_digest(self.trainer.backend, *self.data)

    def save(self, path, epoch: int, history: dict, stopped: bool) -> Path:
        """Write the state after `epoch` (atomically: the previous file stays until the rename)."""
        state = {
            "epoch": epoch,
            "stopped": stopped,
            "samples": self.samples,
            "digest": self.digest,
            "history": history,
            "model": self.trainer.model.state_dict(),
            "optimizer": {"type": type(self.trainer.optimizer).__name__, **self.trainer.optimizer.state_dict()},
            "callbacks": [{"type": type(c).__name__, "state": c.state_dict()} for c in self.callbacks],
            "generators": {name: generator.state_dict() for name, generator in self.generators.items()},
        }
        return save_checkpoint(path, state)

    def restore(self, path, epochs: int) -> tuple[int, dict]:
        """Load the state saved at `path`; returns (the first epoch still to run, the history)."""
        state = load_checkpoint(path)
        where = f"checkpoint {path}"
        try:
            self._check(state, where)
            self.trainer.model.load_state_dict(state["model"])
            self.trainer.optimizer.load_state_dict(state["optimizer"])
            for callback, saved in zip(self.callbacks, state["callbacks"]):
                callback.load_state_dict(_on(self.trainer.backend, saved["state"]))
            for name, generator in self.generators.items():
                generator.load_state_dict(state["generators"][name])
        except (KeyError, TypeError, ValueError) as error:
            raise CheckpointError(f"{where} does not match this training run: {error_message(error)}") from None
        epoch = int(state["epoch"])
        return (epochs + 1 if state["stopped"] else epoch + 1), state["history"]

    def _check(self, state, where):
        optimizer = type(self.trainer.optimizer).__name__
        if state["optimizer"].get("type") != optimizer:
            raise ValueError(
                f"it was saved with optimiser {state['optimizer'].get('type')!r}, this run uses {optimizer!r}"
            )
        saved = [c["type"] for c in state["callbacks"]]
        ours = [type(c).__name__ for c in self.callbacks]
        if saved != ours:
            raise ValueError(f"its callbacks with a state are {saved}, this run's are {ours}")
        if state.get("samples", self.samples) != self.samples:  # (checkpoints before diynn saved it have none)
            size = state["samples"]
            raise ValueError(f"it was saved by a run on {size} training samples, this run has {self.samples}")
        if state.get("digest", self.digest) != self.digest:  # (nor a digest: older checkpoints have none)
            raise ValueError(
                f"it was saved by a run on other training data of the same size ({self.samples} samples): "
                "another split, order or selection of the data"
            )
        if ("val_loss" in state["history"]) != self.validated:
            saved, ours = ("without", "some") if self.validated else ("with", "none")
            raise ValueError(f"it was saved by a run {saved} validation data, this run has {ours}")
        if set(state["generators"]) != set(self.generators):
            raise ValueError(
                f"its random generators are {sorted(state['generators'])}, this run's {sorted(self.generators)}"
            )


def data_digest(backend, x, y) -> str:
    """A digest of a training set, so that a resume on another set of the same size (another split,
    order or seed) can be refused.

    Args:
        x: (N, ...) the samples, an array of `backend`.
        y: (N, ...) their targets, or None.

    Returns:
        digest: 16 hex digits of the arrays' shapes, dtypes and DIGEST_ROWS rows spread evenly over
            them (the same for the same values on every backend).
    """
    spread = np.linspace(0, x.shape[0] - 1, min(DIGEST_ROWS, x.shape[0])).round().astype(np.int64)
    rows = backend.asarray(spread)
    digest = hashlib.blake2b(digest_size=8)
    for array in (x, y):
        if array is not None:
            digest.update(f"{tuple(array.shape)} {backend.numpy_dtype(array.dtype)}".encode())
            digest.update(backend.to_numpy(backend.xp.take(array, rows, axis=0)).tobytes())  # C order, any layout
    return digest.hexdigest()


def save_checkpoint(path, state: dict) -> Path:
    """Write `state` to `path` as a checkpoint: one .npz file, written atomically.

    Args:
        state: nested dicts and lists of JSON values and arrays of any backend.
        path: the file to write.

    Returns:
        path: the file written, as a Path.
    """
    path = Path(path)
    arrays: dict[str, np.ndarray] = {}
    header = json.dumps({"format": FORMAT, "state": _split(state, arrays)})
    with atomic_write(path) as file:
        np.savez(file, **{_HEADER: np.array(header)}, **arrays)
    return path


def load_checkpoint(path) -> dict:
    """The state saved at `path` by `save_checkpoint`, read with allow_pickle=False.

    Args:
        path: the checkpoint file.

    Returns:
        state: the nested dicts and lists saved, arrays as NumPy arrays.

    Raises:
        FileNotFoundError: no file at `path`.
        CheckpointError: a file that is not a readable diynn checkpoint (the message names it).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {path} does not exist")
    arrays = read_npz(path, CheckpointError, "checkpoint")
    entry = arrays.pop(_HEADER, None)
    if entry is None or entry.dtype.kind != "U" or entry.ndim != 0:
        raise CheckpointError(f"{path} is not a diynn checkpoint (no {_HEADER} entry)")
    try:
        header = json.loads(str(entry))
    except (json.JSONDecodeError, RecursionError) as error:
        raise CheckpointError(f"{path}: corrupt checkpoint header: {error}") from None
    if not isinstance(header, dict) or header.get("format") != FORMAT:
        raise CheckpointError(f"{path}: unsupported checkpoint format, expected {FORMAT!r}")
    try:
        return _join(header["state"], arrays)
    except (KeyError, TypeError) as error:
        raise CheckpointError(f"{path}: the header names an array the file does not hold: {error}") from None


def _split(value, arrays: dict):
    """`value` with each array replaced by {"__array__": name}, the arrays (as NumPy) put in `arrays`."""
    if hasattr(value, "shape") and hasattr(value, "dtype"):
        name = f"array{len(arrays)}"
        arrays[name] = backend_of(value).to_numpy(value) if not isinstance(value, np.ndarray) else value
        return {"__array__": name}
    if isinstance(value, dict):
        return {str(key): _split(item, arrays) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_split(item, arrays) for item in value]
    return value


def _join(value, arrays: dict):
    if isinstance(value, dict):
        if set(value) == {"__array__"}:
            return arrays[value["__array__"]]
        return {key: _join(item, arrays) for key, item in value.items()}
    if isinstance(value, list):
        return [_join(item, arrays) for item in value]
    return value


def _on(backend, value):
    """Arrays inside `value` moved onto `backend` (a callback's saved weights)."""
    if isinstance(value, np.ndarray):
        return backend.asarray(value, dtype=getattr(backend.xp, value.dtype.name))
    if isinstance(value, dict):
        return {key: _on(backend, item) for key, item in value.items()}
    if isinstance(value, list):
        return [_on(backend, item) for item in value]
    return value
