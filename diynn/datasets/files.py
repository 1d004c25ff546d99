"""Where data files are looked for, and checking local copies (with a cache of the result)."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

from ..io.files import atomic_write
from .errors import DatasetError
from .specs import FileSpec


def cache_root() -> Path:
    """The cache folder downloads go to: $DIYNN_CACHE_DIR, else $XDG_CACHE_HOME/diynn, else ~/.cache/diynn.

    Returns:
        folder: a Path (not created here).
    """
    if os.environ.get("DIYNN_CACHE_DIR"):
        return Path(os.environ["DIYNN_CACHE_DIR"])
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "diynn"


def verify(path: Path, payload: bytes, spec: FileSpec) -> None:
    """Raise DatasetError unless `path` is the published file: its .gz bytes match the MD5, or
    (for a recompressed copy) its decompressed `payload` matches the SHA-256 and size.
    A success is remembered (by path, size and mtime) so the next load skips the hashing."""
    stat = path.stat()
    key, stamp = str(path.resolve()), [stat.st_size, stat.st_mtime_ns]
    verified = _read_verified()
    if verified.get(key) == stamp:
        return
    if hashlib.md5(path.read_bytes()).hexdigest() != spec.md5:
        if spec.sha256 is None:
            raise DatasetError(f"checksum mismatch: {path} does not have the published MD5 {spec.md5}")
        if len(payload) != spec.raw_size:
            raise DatasetError(f"{path}: decompressed size {len(payload)} bytes, expected {spec.raw_size}")
        if hashlib.sha256(payload).hexdigest() != spec.sha256:
            raise DatasetError(f"checksum mismatch: {path} does not decompress to the published data (SHA-256)")
    verified[key] = stamp
    _write_verified(verified)


def _verified_path() -> Path:
    return cache_root() / "verified.json"


def _read_verified() -> dict:
    try:
        return json.loads(_verified_path().read_text())
    except (OSError, ValueError):
        return {}


def _write_verified(verified: dict) -> None:
    path = _verified_path()
    try:
        with atomic_write(path, "w") as file:
            json.dump(verified, file)
    except OSError:
        pass  # an unwritable cache only costs a re-hash next time
