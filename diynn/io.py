"""Saving and loading models as .npz files: parameters, buffers and the architecture (JSON),
read back with allow_pickle=False. Files are written atomically: a temporary file, then a rename."""

from __future__ import annotations

import contextlib
import json
import zipfile
from pathlib import Path

import numpy as np

import backends
from backends import backend_of

from .files import atomic_write
from .module import Module

FORMAT = "diynn-model-1"
_ARCHITECTURE_KEY = "__architecture__"


class ModelFileError(ValueError):
    """A model file that is not readable, not a diynn model, or does not match the model."""


def architecture(module: Module) -> dict:
    """A JSON-serialisable description that `build` turns back into an equal, untrained module."""
    return {"type": type(module).__name__, "config": _encode(module.config())}


def build(description: dict) -> Module:
    """The module described by `architecture(module)`, with fresh parameters."""
    name = description["type"]
    cls = Module.registry.get(name)
    if cls is None:
        raise ModelFileError(f"unknown module type {name!r} (import the module that defines it first)")
    return cls.from_config(_decode(description["config"]))


def save_model(model: Module, path) -> Path:
    """Write `model`'s architecture, parameters and buffers to `path` (.npz); returns the path."""
    path = Path(path)
    arrays = {name: backend_of(value).to_numpy(value) for name, value in model.state_dict().items()}
    header = json.dumps({"format": FORMAT, "architecture": architecture(model)})
    arrays[_ARCHITECTURE_KEY] = np.array(header)
    with atomic_write(path) as file:
        np.savez(file, **arrays)
    return path


def load_model(path, backend=None) -> Module:
    """The model saved at `path`, rebuilt and with its saved parameters, on `backend` (a name such
    as "cupy"; default: the active backend)."""
    header, arrays = _read(path)
    with backends.use(backend) if backend is not None else contextlib.nullcontext():
        model = build(header["architecture"])
    _load_into(model, arrays, path)
    return model


def load_weights(model: Module, path) -> Module:
    """Load the parameters saved at `path` into an existing `model` of the same architecture."""
    _, arrays = _read(path)
    _load_into(model, arrays, path)
    return model


def _read(path):
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"model file {path} does not exist")
    try:
        with np.load(path, allow_pickle=False) as archive:
            arrays = {name: archive[name] for name in archive.files}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as error:
        raise ModelFileError(f"{path} is not a readable .npz model file (truncated or corrupt?): {error}") from error
    if _ARCHITECTURE_KEY not in arrays:
        raise ModelFileError(f"{path} is an .npz file but not a diynn model (no architecture entry)")
    try:
        header = json.loads(str(arrays.pop(_ARCHITECTURE_KEY)))
    except json.JSONDecodeError as error:
        raise ModelFileError(f"{path}: corrupt architecture entry: {error}") from error
    if header.get("format") != FORMAT:
        raise ModelFileError(f"{path}: unsupported format {header.get('format')!r}, expected {FORMAT!r}")
    return header, arrays


def _load_into(model, arrays, path):
    try:
        model.load_state_dict(arrays)
    except (KeyError, ValueError) as error:
        raise ModelFileError(f"{path} does not match the model: {error}") from error


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
