"""Helpers shared by the experiment scripts: output folder, atomic JSON, standard figures."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import matplotlib
import numpy as np

if "ipykernel" not in sys.modules:  # scripts draw into files; a notebook keeps its inline figures
    matplotlib.use("Agg")

from diynn import backends
from diynn.datasets import DatasetError, DatasetNotFoundError
from diynn.io.files import atomic_write


def run(main) -> None:
    """Run a script's `main()`: the backend is checked first (a one-line error if it cannot run),
    and a missing or corrupt data set is a short message naming the ways to provide it, not a
    traceback. Both exit with status 1."""
    try:
        backends.get_backend()
        main()
    except backends.BackendError as error:
        sys.exit(f"error: {error}")
    except (DatasetNotFoundError, DatasetError) as error:
        message = str(error).replace("pass root=FOLDER", "pass --data-dir FOLDER")
        sys.exit(f"error: {message}")


def add_progress_argument(parser) -> None:
    """--progress / --no-progress, as Trainer.fit's progress (None: a bar on a terminal, lines otherwise)."""
    parser.add_argument(
        "--progress",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="progress bar (default: on a terminal; a line per epoch otherwise; --no-progress: silent)",
    )


def output_dir(path) -> Path:
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    return path


def write_atomic(path: Path, text: str) -> None:
    """Write `text` to `path` through a temporary file and a rename: never a half-written file."""
    with atomic_write(path, "w") as file:
        file.write(text)


def write_json(path: Path, data: dict) -> None:
    write_atomic(path, json.dumps(data, indent=2) + "\n")


def pyplot():
    """matplotlib.pyplot, imported at a script's first figure: a run that stops before drawing one
    (a backend or data-set error, an Optuna worker) does not pay its import (about 0.3 s)."""
    import matplotlib.pyplot as plt

    return plt


def save_figure(figure, path: Path) -> None:
    """Save a matplotlib figure atomically as PNG and close it."""
    try:
        with atomic_write(path) as file:
            figure.savefig(file, format="png", dpi=120, bbox_inches="tight")
    finally:
        pyplot().close(figure)


def backend_info() -> dict:
    """Where a result was made: the backend and device, the CPU and the BLAS kernel (results on the
    CPU depend on the BLAS kernel: the same seed gives slightly different numbers on another host)."""
    from threadpoolctl import threadpool_info

    backend = backends.get_backend()
    blas = sorted(
        {f"{pool['internal_api']} {pool['architecture']}" for pool in threadpool_info() if pool["user_api"] == "blas"}
    )
    return {
        "backend": backend.name,
        "device": getattr(backend, "device_name", str(backend.device)),
        "cpu": _cpu_model(),
        "blas": ", ".join(blas),
    }


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as file:
            return next(line.split(":", 1)[1].strip() for line in file if line.startswith("model name"))
    except (OSError, StopIteration):
        import platform

        return platform.processor() or platform.machine()


def plot_curves(history: dict, path: Path, keys=("loss", "accuracy"), title: str = "") -> None:
    """One panel per key: training and (when present) validation values per epoch."""
    plt = pyplot()
    keys = [key for key in keys if key in history]
    figure, axes = plt.subplots(1, len(keys), figsize=(5 * len(keys), 3.6), squeeze=False)
    for axis, key in zip(axes[0], keys):
        epochs = range(1, len(history[key]) + 1)
        axis.plot(epochs, history[key], label="train")
        if f"val_{key}" in history:
            axis.plot(epochs, history[f"val_{key}"], label="validation")
        axis.set_xlabel("epoch")
        axis.set_ylabel(key)
        axis.xaxis.set_major_locator(plt.MaxNLocator(integer=True))
        axis.grid(alpha=0.3)
        axis.legend()
    if title:
        figure.suptitle(title)
    save_figure(figure, path)


def plot_confusion_matrix(matrix, class_names, path: Path, title: str = "") -> None:
    """Counts of (true class, predicted class), class names on both axes."""
    plt = pyplot()
    figure, axis = plt.subplots(figsize=(7, 6))
    image = axis.imshow(matrix, cmap="Blues")
    ticks = range(len(class_names))
    axis.set_xticks(ticks, class_names, rotation=45, ha="right")
    axis.set_yticks(ticks, class_names)
    axis.set_xlabel("predicted")
    axis.set_ylabel("true")
    for (row, column), count in np.ndenumerate(matrix):
        colour = "white" if count > matrix.max() / 2 else "black"
        axis.text(column, row, str(count), ha="center", va="center", fontsize=7, color=colour)
    figure.colorbar(image, ax=axis)
    axis.set_title(title or "confusion matrix (test set)")
    save_figure(figure, path)


def plot_image_rows(rows: dict, path: Path, title: str = "", row_height: float = 1.3, layout=None) -> None:
    """One row of 28x28 grey images in [0, 1] per entry of `rows` {label: images}, the label above
    the row's first image (left-aligned, so that long labels never overlap a neighbour's)."""
    plt = pyplot()
    columns = len(next(iter(rows.values())))
    figure, axes = plt.subplots(
        len(rows), columns, figsize=(1.2 * columns, row_height * len(rows)), squeeze=False, layout=layout
    )
    for row, (label, images) in enumerate(rows.items()):
        for column, image in enumerate(images):
            axes[row, column].imshow(np.asarray(image).reshape(28, 28), cmap="gray_r", vmin=0, vmax=1)
            axes[row, column].set_xticks([])
            axes[row, column].set_yticks([])
        axes[row, 0].set_title(label, loc="left", fontsize=8)
    if title:
        figure.suptitle(title)
    save_figure(figure, path)


def plot_image_grid(images, captions, path: Path, title: str = "", columns: int = 8) -> None:
    """28x28 grey images in a grid, each with a caption."""
    plt = pyplot()
    rows = max(1, -(-len(images) // columns))
    # panels made without ticks: the same picture (their axes are off), drawn in about half the time
    figure, axes = plt.subplots(
        rows, columns, figsize=(1.6 * columns, 1.9 * rows), squeeze=False, subplot_kw={"xticks": [], "yticks": []}
    )
    for axis in axes.ravel():
        axis.axis("off")
    for axis, image, caption in zip(axes.ravel(), images, captions):
        axis.imshow(np.asarray(image).reshape(28, 28), cmap="gray_r")
        axis.set_title(caption, fontsize=7)
    if title:
        figure.suptitle(title)
    save_figure(figure, path)


def plot_embeddings(embeddings, labels, class_names, path, latent):
    plt = pyplot()
    figure, axes = plt.subplots(1, len(embeddings), figsize=(7 * len(embeddings), 6))
    colours = plt.get_cmap("tab10")
    for axis, (name, points) in zip(axes, embeddings.items()):
        for label, class_name in enumerate(class_names):
            chosen = labels == label
            axis.scatter(points[chosen, 0], points[chosen, 1], s=4, color=colours(label), label=class_name)
        axis.set_title(f"t-SNE of {name}" + (f" (latent size {latent})" if name == "latent codes" and latent else ""))
        axis.set_xticks([])
        axis.set_yticks([])
    axes[-1].legend(markerscale=4, fontsize=8, loc="center left", bbox_to_anchor=(1, 0.5))
    save_figure(figure, path)
