"""Loading a data set: find its files (or download them), check them, return float32 arrays."""

from __future__ import annotations

import os
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .download import Unreachable, download
from .errors import DatasetError, DatasetNotFoundError
from .files import cache_root, verify
from .idx import parse_idx, read_payload
from .specs import FASHION_MNIST, KMNIST, DatasetSpec, FileSpec

IMAGE_SIDE = 28


@dataclass
class Dataset:
    """A data set's arrays, as NumPy arrays (move them with `backend.asarray`, or let Trainer.fit do it).

    Attributes:
        x_train: (N, 784) or (N, 1, 28, 28) float32 images in [0, 1]; (N, 4) float32 features for Iris.
        y_train: (N,) int64 class labels.
        x_test: the test images (or features), as x_train.
        y_test: (N,) int64 test labels.
        class_names: the name of each class, by label.
    """

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    class_names: tuple[str, ...]


def load_fashion_mnist(root=None, flat=True, download=True, progress=None) -> Dataset:
    """Fashion-MNIST (Zalando): 60,000 + 10,000 28x28 grey images of 10 kinds of clothing.

    Args:
        root: a folder to look in first (default: $DIYNN_DATA_DIR, if set); see `load`.
        flat: images as (N, 784) rows; False: (N, 1, 28, 28).
        download: download the files into the cache where no folder has them.
        progress: a download's progress bar: None (default) on a terminal or in Jupyter, True always,
            False never.

    Returns:
        data: the Dataset, float32 images in [0, 1] and int64 labels.

    Raises:
        DatasetNotFoundError: the files are nowhere and could not be downloaded.
        DatasetError: a file is corrupt, truncated or fails its checksum.
    """
    return load(FASHION_MNIST, root, flat, download, progress)


def load_kmnist(root=None, flat=True, download=True, progress=None) -> Dataset:
    """Kuzushiji-MNIST (CODH): 60,000 + 10,000 28x28 images of 10 cursive hiragana.

    Args:
        root: a folder to look in first (default: $DIYNN_DATA_DIR, if set); see `load`.
        flat: images as (N, 784) rows; False: (N, 1, 28, 28).
        download: download the files into the cache where no folder has them.
        progress: a download's progress bar: None (default) on a terminal or in Jupyter, True always,
            False never.

    Returns:
        data: the Dataset, float32 images in [0, 1] and int64 labels.

    Raises:
        DatasetNotFoundError: the files are nowhere and could not be downloaded.
        DatasetError: a file is corrupt, truncated or fails its checksum.
    """
    return load(KMNIST, root, flat, download, progress)


def load_iris(test_size=0.3, seed=0) -> Dataset:
    """Iris (from scikit-learn), split into train and test sets stratified by class.

    Args:
        test_size: the fraction of the 150 samples in the test set.
        seed: seeds the split.

    Returns:
        data: the Dataset, x (N, 4) float32 features and y (N,) int64 labels of 3 classes.
    """
    from sklearn.datasets import load_iris as sklearn_iris
    from sklearn.model_selection import train_test_split

    iris = sklearn_iris()
    x_train, x_test, y_train, y_test = train_test_split(
        iris.data.astype(np.float32),
        iris.target.astype(np.int64),
        test_size=test_size,
        stratify=iris.target,
        random_state=seed,
    )
    return Dataset(x_train, y_train, x_test, y_test, tuple(iris.target_names))


def load(spec: DatasetSpec, root=None, flat=True, download=True, progress=None) -> Dataset:
    """Data set `spec` from the first folder that has all its files, else downloaded into the cache.

    The folders, in order (`search_folders`): `root` (or $DIYNN_DATA_DIR) and its subfolder named
    after the data set, the user cache, the system folders. Local files are checked against the
    published checksums (a success is remembered), downloads against their MD5.

    Args:
        spec: what to load, e.g. FASHION_MNIST or KMNIST.
        root: a folder to look in first (default: $DIYNN_DATA_DIR, if set).
        flat: images as (N, 784) rows; False: (N, 1, 28, 28).
        download: download missing files into the cache where no folder has them all.
        progress: a download's progress bar: None (default) on a terminal or in Jupyter, True always,
            False never.

    Returns:
        data: the Dataset, float32 images in [0, 1] and int64 labels.

    Raises:
        DatasetNotFoundError: the files are nowhere and could not be downloaded (the message says
            where they were looked for and how to provide them).
        DatasetError: a file is corrupt, truncated or fails its checksum.
    """
    folders = search_folders(spec, root)
    for folder in folders:
        if all((folder / f.name).is_file() for f in spec.files):
            arrays = [_read_idx(folder / f.name, f, image=i % 2 == 0) for i, f in enumerate(spec.files)]
            return _dataset(arrays, spec, flat)
        if spec.npz_names and all((folder / name).is_file() for name in spec.npz_names):
            arrays = [
                _read_npz(folder / n, f, image=i % 2 == 0) for i, (n, f) in enumerate(zip(spec.npz_names, spec.files))
            ]
            return _dataset(arrays, spec, flat)
    cache = cache_root() / spec.name
    missing = [f for f in spec.files if not (cache / f.name).is_file()]
    if download:
        try:
            for file in missing:
                _download(spec, file, cache, progress)
            missing = []
        except Unreachable as error:
            reason = str(error)
        except DatasetError:
            _remove_if_empty(cache)
            raise
    else:
        reason = "download=False"
    if missing:
        _remove_if_empty(cache)
        raise DatasetNotFoundError(_not_found_message(spec, folders, missing, reason))
    return load(spec, cache, flat, download=False)


def search_folders(spec: DatasetSpec, root=None) -> list[Path]:
    """The folders `load` looks in for data set `spec`, in order.

    Args:
        spec: the data set.
        root: a folder to look in first (default: $DIYNN_DATA_DIR, if set).

    Returns:
        folders: a list of Paths.
    """
    folders = []
    if root is not None or os.environ.get("DIYNN_DATA_DIR"):
        explicit = Path(root if root is not None else os.environ["DIYNN_DATA_DIR"])
        folders += [explicit / spec.name, explicit]
    folders.append(cache_root() / spec.name)
    folders += [Path(d) for d in spec.system_dirs]
    return folders


def _download(spec, file: FileSpec, cache: Path, progress) -> None:
    download(spec.base_url + file.name, cache / file.name, file.md5, file.gz_size, progress)


def _read_idx(path: Path, spec: FileSpec, image: bool) -> np.ndarray:
    payload = read_payload(path)
    verify(path, payload, spec)
    return _check_shape(parse_idx(payload, path), path, spec, image)


def _read_npz(path: Path, spec: FileSpec, image: bool) -> np.ndarray:
    try:
        with np.load(path, allow_pickle=False) as archive:
            if len(archive.files) != 1:
                raise DatasetError(f"{path}: expected one array, found {archive.files}")
            array = archive[archive.files[0]]
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as error:
        raise DatasetError(f"{path}: corrupt or truncated .npz file ({error})") from error
    if array.dtype != np.uint8:
        raise DatasetError(f"{path}: expected uint8 values, found {array.dtype}")
    return _check_shape(array, path, spec, image)


def _check_shape(array, path, spec: FileSpec, image: bool) -> np.ndarray:
    expected = (spec.samples, IMAGE_SIDE, IMAGE_SIDE) if image else (spec.samples,)
    if array.shape != expected:
        raise DatasetError(f"{path}: wrong size, shape {array.shape}, expected {expected}")
    return array


def _dataset(arrays, spec: DatasetSpec, flat: bool) -> Dataset:
    train_images, train_labels, test_images, test_labels = arrays
    for labels, source in ((train_labels, spec.train_labels), (test_labels, spec.test_labels)):
        if labels.max(initial=0) >= len(spec.class_names):
            raise DatasetError(f"{source.name}: label {labels.max()} out of range for {len(spec.class_names)} classes")
    shape = (-1, IMAGE_SIDE * IMAGE_SIDE) if flat else (-1, 1, IMAGE_SIDE, IMAGE_SIDE)

    def images(raw):
        return (raw.reshape(shape).astype(np.float32)) / np.float32(255)

    return Dataset(
        images(train_images),
        train_labels.astype(np.int64),
        images(test_images),
        test_labels.astype(np.int64),
        spec.class_names,
    )


def _remove_if_empty(folder: Path) -> None:
    """A failed download leaves no empty cache folder behind."""
    try:
        folder.rmdir()
    except OSError:  # not empty, or not there
        pass


def _not_found_message(spec, folders, missing, reason) -> str:
    names = ", ".join(f.name for f in missing)
    layouts = f"the four files {', '.join(f.name for f in spec.files)}"
    if spec.npz_names:
        layouts += f", or the .npz files {', '.join(spec.npz_names)}"
    hint = f"\n  3. install a system copy ({spec.system_package_hint})" if spec.system_package_hint else ""
    return (
        f"{spec.name}: files not found ({names}) and not downloadable ({reason}).\n"
        f"Looked in: {', '.join(str(f) for f in folders)}.\n"
        f"A folder must hold {layouts}. Provide them in one of these ways:\n"
        f"  1. pass root=FOLDER (or set DIYNN_DATA_DIR=FOLDER)\n"
        f"  2. copy them into the cache folder {cache_root() / spec.name}, e.g. from {spec.base_url}"
        f"{hint or chr(10) + '  3. run again on a machine with internet access to download them into the cache'}"
    )
