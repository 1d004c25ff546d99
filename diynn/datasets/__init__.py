"""Data sets: Iris, Fashion-MNIST and Kuzushiji-MNIST, found locally or downloaded and checked."""

from .errors import DatasetError, DatasetNotFoundError
from .files import cache_root
from .idx import parse_idx, write_idx
from .loaders import Dataset, load, load_fashion_mnist, load_iris, load_kmnist, search_folders
from .specs import FASHION_MNIST, KMNIST, DatasetSpec, FileSpec

__all__ = [
    "FASHION_MNIST",
    "KMNIST",
    "Dataset",
    "DatasetError",
    "DatasetNotFoundError",
    "DatasetSpec",
    "FileSpec",
    "cache_root",
    "load",
    "load_fashion_mnist",
    "load_iris",
    "load_kmnist",
    "parse_idx",
    "search_folders",
    "write_idx",
]
