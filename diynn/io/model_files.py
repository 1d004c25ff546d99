"""Saving and loading models: parameters, buffers and the architecture (JSON), as .npz (read back
with allow_pickle=False) or as .safetensors (the architecture in its metadata). The parameter names
and layouts are PyTorch's (`0.weight`, (out, in) for a Linear), so a .safetensors file of a
Sequential loads into the matching torch.nn.Sequential and back. Files are written atomically: a
temporary file, then a rename."""

from __future__ import annotations

import contextlib
import json
import zipfile
from pathlib import Path

import numpy as np

from .. import backends
from ..backends import backend_of
from ..module import Module
from . import safetensors_file
from .files import atomic_write

FORMAT = "diynn-model-1"
_ARCHITECTURE_KEY = "__architecture__"
MAX_DEPTH = 64  # modules nested in modules; deeper files are refused before anything is built
# An architecture may need this many numbers more than a model file holds and still be built, so
# that a missing or mis-shaped weight is named (entry and shape) by the state-dict check; beyond
# it the file is refused before anything is allocated.
BUDGET_SLACK = 2**20


class ModelFileError(ValueError):
    """A model file that is not readable, not a diynn model, or does not match the model."""


def architecture(module: Module) -> dict:
    """A JSON-serialisable description that `build` turns back into an equal, untrained module."""
    return {"type": type(module).__name__, "config": _encode(module.config())}


def build(description: dict, budget: int | None = None, classes=()) -> Module:
    """The module described by `architecture(module)`, with fresh parameters.

    The description is checked before anything is allocated: known module types only, a config
    object for each, at most MAX_DEPTH levels of nesting, and (when `budget` is given, as it is
    for a model file: the numbers the file holds) no more parameters than `budget`. Any violation,
    or a config value a constructor refuses, is a ModelFileError naming the entry. The types built
    are the library's own modules and the Module subclasses in `classes`, by class name (a class
    of the caller's with a built-in's name replaces it only when passed here).
    """
    return _Builder(budget, classes).build(description, "architecture", 0)


class _Builder:
    def __init__(self, budget, classes):
        self.remaining = budget
        self.known = dict(Module.registry)
        for cls in classes:
            if not (isinstance(cls, type) and issubclass(cls, Module)):
                raise TypeError(f"classes must hold Module subclasses, got {cls!r}")
            self.known[cls.__name__] = cls

    def build(self, description, where, depth):
        if depth > MAX_DEPTH:
            raise ModelFileError(f"{where}: modules nested more than {MAX_DEPTH} deep")
        if not isinstance(description, dict) or set(description) != {"type", "config"}:
            raise ModelFileError(f"{where}: expected an object with 'type' and 'config', got {_short(description)}")
        name, config = description["type"], description["config"]
        cls = self.known.get(name) if isinstance(name, str) else None
        if cls is None:
            raise ModelFileError(
                f"{where}: unknown module type {_short(name)} (a class of your own: pass it to "
                "load_model(path, classes=[...]))"
            )
        if not isinstance(config, dict):
            raise ModelFileError(f"{where} ({name}): config must be an object, got {_short(config)}")
        where = f"{where} ({name})"
        try:
            size = cls.stored_size(config)
        except (KeyError, TypeError, ValueError) as error:
            raise ModelFileError(f"{where}: bad config: {error_message(error)}") from None
        if self.remaining is not None:
            self.remaining -= size
            if self.remaining < 0:
                raise ModelFileError(f"{where}: the architecture needs more parameters than the file holds")
        arguments = {key: self.decode(value, f"{where}.{key}", depth + 1) for key, value in config.items()}
        try:
            return cls.from_config(arguments)
        except (KeyError, TypeError, ValueError) as error:
            raise ModelFileError(f"{where}: bad config: {error_message(error)}") from None

    def decode(self, value, where, depth):
        if depth > MAX_DEPTH:
            raise ModelFileError(f"{where}: nested more than {MAX_DEPTH} deep")
        if isinstance(value, dict):
            if "__module__" in value:
                return self.build(value["__module__"], where, depth)
            return {key: self.decode(item, f"{where}.{key}", depth + 1) for key, item in value.items()}
        if isinstance(value, list):
            return [self.decode(item, f"{where}[{index}]", depth + 1) for index, item in enumerate(value)]
        return value


def _short(value) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def error_message(error) -> str:
    """An exception's message (a KeyError's without the quotes its str() adds)."""
    return str(error.args[0]) if isinstance(error, KeyError) and error.args else str(error)


def save_model(model: Module, path) -> Path:
    """Write `model`'s architecture, parameters and buffers to `path`, atomically.

    Args:
        model: the Module to save (its architecture is each module's type name and `config()`).
        path: the file: .safetensors where the name ends so (needs the safetensors package), else
            .npz.

    Returns:
        path: the file written, as a Path.
    """
    path = Path(path)
    arrays = {name: backend_of(value).to_numpy(value) for name, value in model.state_dict().items()}
    header = json.dumps({"format": FORMAT, "architecture": architecture(model)})
    if path.suffix == ".safetensors":
        return safetensors_file.write(path, arrays, {_ARCHITECTURE_KEY: header})
    arrays[_ARCHITECTURE_KEY] = np.array(header)
    with atomic_write(path) as file:
        np.savez(file, **arrays)
    return path


def load_model(path, backend=None, classes=()) -> Module:
    """The model saved at `path`, rebuilt and with its saved parameters.

    The file may name the library's modules and the Module subclasses passed in `classes`, nothing
    else; it is checked before anything is allocated. A float64 model stays float64.

    Args:
        path: a file written by `save_model` (.npz or .safetensors).
        backend: where the model is built, a name such as "cupy" or a Backend; default: the active
            backend.
        classes: Module subclasses of yours that the file names (a model with layers of your own).

    Returns:
        model: the rebuilt Module.

    Raises:
        FileNotFoundError: no file at `path`.
        ModelFileError: a file that is not a readable diynn model, names unknown modules, or does
            not match its architecture (e.g. a PyTorch state_dict: use `load_weights`).
    """
    header, arrays = _read(path)
    if header is None:
        raise ModelFileError(
            f"{path} holds weights but no diynn architecture (e.g. a PyTorch state_dict): build the model "
            "and load them with load_weights(model, path)"
        )
    with backends.use(backend) if backend is not None else contextlib.nullcontext():
        budget = sum(array.size for array in arrays.values()) + BUDGET_SLACK
        model = build(header["architecture"], budget, classes)
        saved = {array.dtype for array in arrays.values()}
        if len(saved) == 1 and next(iter(saved)) != np.float32:  # keep the saved precision (float64 stays)
            model.astype(getattr(backends.get_backend().xp, saved.pop().name))
    _load_into(model, arrays, path)
    return model


def load_weights(model: Module, path) -> Module:
    """Load the parameters saved at `path` into an existing `model` of the same architecture.

    Args:
        model: the Module to load into, in place.
        path: a diynn model file, or a .safetensors state_dict of the matching PyTorch model (its
            batch norms' num_batches_tracked counters, which diynn does not keep, are left out).

    Returns:
        model: the same `model`.

    Raises:
        FileNotFoundError: no file at `path`.
        ModelFileError: an unreadable file, or weights whose names or shapes do not match the model.
    """
    _, arrays = _read(path)
    _load_into(model, arrays, path)
    return model


def _read(path):
    """(the header, or None for a .safetensors file without one; the weight arrays), checked."""
    path = Path(path)
    if path.is_dir():
        raise ModelFileError(f"{path} is a directory, not a model file")
    if not path.is_file():
        raise FileNotFoundError(f"model file {path} does not exist")
    if path.suffix == ".safetensors":
        header, arrays = _read_safetensors(path)
    else:
        header, arrays = _read_npz(path)
    for name, value in arrays.items():
        if value.dtype.kind != "f":
            raise ModelFileError(f"{path}: weights {name!r} are {value.dtype}, not real floating point")
    return header, arrays


def _read_safetensors(path):
    try:
        metadata, arrays = safetensors_file.read(path)
    except safetensors_file.SafetensorsFileError as error:
        raise ModelFileError(str(error)) from None
    arrays = {name: value for name, value in arrays.items() if not name.endswith(".num_batches_tracked")}
    if _ARCHITECTURE_KEY not in metadata:
        return None, arrays
    return _header(path, metadata[_ARCHITECTURE_KEY]), arrays


def read_npz(path, error: type[Exception], kind: str) -> dict[str, np.ndarray]:
    """The arrays of the .npz file at `path`, read with allow_pickle=False; `error` naming the file
    and `kind` (what it should have been) if it is not a readable .npz of .npy members."""
    if not zipfile.is_zipfile(path):
        raise error(f"{path} is not a readable {kind} (truncated or corrupt, or another format such as a plain .npy)")
    try:
        with np.load(path, allow_pickle=False) as archive:
            arrays = {name: archive[name] for name in archive.files}
    except (OSError, ValueError, EOFError, KeyError, NotImplementedError, zipfile.BadZipFile) as problem:
        raise error(f"{path} is not a readable {kind} (truncated or corrupt?): {problem}") from problem
    for name, value in arrays.items():
        if not isinstance(value, np.ndarray):
            raise error(f"{path}: member {name!r} is not a NumPy array (.npy); not a {kind}")
    return arrays


def _read_npz(path):
    arrays = read_npz(path, ModelFileError, ".npz model file")
    if _ARCHITECTURE_KEY not in arrays:
        raise ModelFileError(f"{path} is an .npz file but not a diynn model (no architecture entry)")
    entry = arrays.pop(_ARCHITECTURE_KEY)
    if entry.dtype.kind != "U" or entry.ndim != 0:
        raise ModelFileError(f"{path}: corrupt architecture entry (a {entry.dtype} array of shape {entry.shape})")
    return _header(path, str(entry)), arrays


def _header(path, text: str) -> dict:
    """The JSON header of a model file, checked to be of this format."""
    try:
        header = json.loads(text)
    except (json.JSONDecodeError, RecursionError) as error:
        raise ModelFileError(f"{path}: corrupt architecture entry: {type(error).__name__}: {error}") from None
    if not isinstance(header, dict) or header.get("format") != FORMAT:
        found = header.get("format") if isinstance(header, dict) else _short(header)
        raise ModelFileError(f"{path}: unsupported format {found!r}, expected {FORMAT!r}")
    return header


def _load_into(model, arrays, path):
    try:
        model.load_state_dict(arrays)
    except (KeyError, ValueError) as error:
        raise ModelFileError(f"{path} does not match the model: {error_message(error)}") from error


def _encode(value):
    if isinstance(value, Module):
        return {"__module__": architecture(value)}
    if isinstance(value, (list, tuple)):
        return [_encode(item) for item in value]
    if isinstance(value, dict):
        return {key: _encode(item) for key, item in value.items()}
    return value


def _decode(value):
    if isinstance(value, dict):
        if "__module__" in value:
            return build(value["__module__"])
        return {key: _decode(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_decode(item) for item in value]
    return value
