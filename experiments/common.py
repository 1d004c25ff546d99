"""Helpers shared by the experiment scripts: output folder, atomic JSON, standard figures."""

from __future__ import annotations

import json
import os
import sys
import tempfile
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

import backends  # noqa: E402


def run(main) -> None:
    """Run a script's `main()`, turning a backend that cannot run into a one-line error."""
    try:
        main()
    except backends.BackendError as error:
        sys.exit(f"error: {error}")


def output_dir(path) -> Path:
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    return path


def write_atomic(path: Path, text: str) -> None:
    """Write `text` to `path` through a temporary file and a rename: never a half-written file."""
    handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(handle, "w") as file:
            file.write(text)
        os.replace(temporary, path)
    except BaseException:
        os.unlink(temporary)
        raise


def write_json(path: Path, data: dict) -> None:
    write_atomic(path, json.dumps(data, indent=2) + "\n")


def save_figure(figure, path: Path) -> None:
    """Save a matplotlib figure atomically as PNG and close it."""
    handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".png", dir=path.parent)
    os.close(handle)
    try:
        figure.savefig(temporary, dpi=120, bbox_inches="tight")
        os.replace(temporary, path)
    except BaseException:
        os.unlink(temporary)
        raise
    finally:
        plt.close(figure)


def backend_info() -> dict:
    backend = backends.get_backend()
    return {"backend": backend.name, "device": getattr(backend, "device_name", str(backend.device))}


def plot_curves(history: dict, path: Path, keys=("loss", "accuracy"), title: str = "") -> None:
    """One panel per key: training and (when present) validation values per epoch."""
    keys = [key for key in keys if key in history]
    figure, axes = plt.subplots(1, len(keys), figsize=(5 * len(keys), 3.6), squeeze=False)
    for axis, key in zip(axes[0], keys):
        epochs = range(1, len(history[key]) + 1)
        axis.plot(epochs, history[key], label="train")
        if f"val_{key}" in history:
            axis.plot(epochs, history[f"val_{key}"], label="validation")
        axis.set_xlabel("epoch")
        axis.set_ylabel(key)
        axis.grid(alpha=0.3)
        axis.legend()
    if title:
        figure.suptitle(title)
    save_figure(figure, path)
