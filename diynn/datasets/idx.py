"""Parsing IDX files (the MNIST family's format), gzip-compressed or not, with clear errors."""

from __future__ import annotations

import gzip
import math
import sys
import zlib
from pathlib import Path

import numpy as np

from .errors import DatasetError

_DTYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


def read_payload(path: Path) -> bytes:
    """The decompressed bytes of a .gz file (or the bytes of an uncompressed one)."""
    data = path.read_bytes()
    if path.suffix != ".gz":
        return data
    try:
        return gzip.decompress(data)
    except (gzip.BadGzipFile, EOFError, zlib.error) as error:
        raise DatasetError(f"{path}: corrupt or truncated gzip file ({error})") from error


def parse_idx(payload: bytes, source) -> np.ndarray:
    """The array stored in IDX bytes (the MNIST family's format).

    The format: magic 0x0000, a type code, the rank, big-endian uint32 dimensions, then the values.

    Args:
        payload: the file's decompressed bytes.
        source: names the file in errors.

    Returns:
        array: a read-only NumPy array over `payload`, of the stored shape and type.

    Raises:
        DatasetError: not an IDX file, or a truncated one, or one with trailing bytes.
    """
    if len(payload) < 4 or payload[:2] != b"\x00\x00" or payload[2] not in _DTYPES:
        raise DatasetError(f"{source}: not an IDX file (bad magic number {payload[:4].hex()})")
    rank = payload[3]
    header = 4 + 4 * rank
    if len(payload) < header:
        raise DatasetError(f"{source}: truncated IDX header")
    shape = tuple(int(d) for d in np.frombuffer(payload, dtype=">u4", count=rank, offset=4))
    dtype = np.dtype(_DTYPES[payload[2]])
    expected = header + math.prod(shape) * dtype.itemsize  # Python ints: no overflow
    if expected > sys.maxsize:
        raise DatasetError(
            f"{source}: IDX dimensions {shape} are too large ({expected} bytes: more than memory can address)"
        )
    if len(payload) != expected:
        problem = "truncated" if len(payload) < expected else "has trailing bytes"
        raise DatasetError(f"{source}: IDX data {problem}: {len(payload)} bytes, shape {shape} needs {expected}")
    return np.frombuffer(payload, dtype=dtype, offset=header).reshape(shape)


def write_idx(path: Path, array: np.ndarray) -> None:
    """Write a uint8 array as a gzip-compressed IDX file (used to make test fixtures).

    Args:
        path: the file to write.
        array: converted to uint8.
    """
    array = np.ascontiguousarray(array, dtype=np.uint8)
    header = bytes([0, 0, 0x08, array.ndim]) + np.asarray(array.shape, dtype=">u4").tobytes()
    Path(path).write_bytes(gzip.compress(header + array.tobytes()))
