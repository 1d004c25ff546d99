"""Reading and writing .safetensors files (the no-pickle weights format that PyTorch, JAX and
Hugging Face tools read): named arrays and a string-to-string metadata map. Needs the
`safetensors` package (pip install -e ".[safetensors]")."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .files import atomic_write


class SafetensorsFileError(ValueError):
    """A .safetensors file that cannot be read (truncated, corrupt, not safetensors)."""


def _library():
    try:
        import safetensors
        import safetensors.numpy
    except ImportError as error:
        raise ImportError('.safetensors files need the safetensors package: pip install -e ".[safetensors]"') from error
    return safetensors


def write(path, arrays: dict[str, np.ndarray], metadata: dict[str, str]) -> Path:
    """Write `arrays` and `metadata` to `path` atomically (a temporary name, then a rename)."""
    payload = _library().numpy.save({name: np.ascontiguousarray(a) for name, a in arrays.items()}, metadata=metadata)
    path = Path(path)
    with atomic_write(path) as file:
        file.write(payload)
    return path


def read(path) -> tuple[dict[str, str], dict[str, np.ndarray]]:
    """(metadata, arrays) of the file at `path`; SafetensorsFileError naming it if unreadable."""
    safetensors = _library()
    try:
        with safetensors.safe_open(str(path), framework="numpy") as file:
            metadata = file.metadata() or {}
            arrays = {name: file.get_tensor(name) for name in file.keys()}
    except (OSError, ValueError, safetensors.SafetensorError) as error:
        raise SafetensorsFileError(
            f"{path} is not a readable .safetensors file (truncated or corrupt?): {error}"
        ) from None
    return metadata, arrays
