"""Downloading a published file into the cache: progress bar, MD5 check, atomic rename."""

from __future__ import annotations

import hashlib
import http.client
import urllib.error
import urllib.request
from pathlib import Path

from ..io.files import atomic_write
from ..training.progress import progress_bar
from .errors import DatasetError


class Unreachable(OSError):
    """The server could not be reached at all (offline, DNS failure, refused connection)."""


def download(url: str, destination: Path, md5: str, size: int | None = None, progress: bool | None = None) -> Path:
    """Fetch `url` to `destination`, checking its length and MD5; nothing is left at
    `destination` (or beside it) unless the file is complete and correct."""
    try:
        response = urllib.request.urlopen(url, timeout=60)
    except urllib.error.HTTPError as error:
        raise DatasetError(f"download of {url} failed: HTTP {error.code} {error.reason}") from error
    except (urllib.error.URLError, OSError) as error:
        raise Unreachable(f"cannot reach {url}: {error}") from error
    try:
        with response, atomic_write(destination) as file:
            total = response.length if response.length is not None else size
            written, got = _copy(response, file, total, destination.name, progress)
            if total is not None and written != total:
                raise DatasetError(f"download of {url} stopped after {written} of {total} bytes")
            if size is not None and written != size:
                raise DatasetError(f"download of {url}: {written} bytes, the published file has {size}")
            if got != md5:
                raise DatasetError(f"checksum mismatch for {url}: MD5 {got}, expected {md5}")
    except (http.client.HTTPException, OSError) as error:
        raise DatasetError(f"download of {url} failed: {error!r}") from error
    return destination


def _copy(response, file, total, label, progress) -> tuple[int, str]:
    """Copy the response into `file`; returns the bytes written and their MD5."""
    bar = progress_bar(show=progress, total=total, unit="B", unit_scale=True, desc=label, leave=False)
    written, digest = 0, hashlib.md5()
    while chunk := response.read(1 << 16):
        file.write(chunk)
        digest.update(chunk)
        written += len(chunk)
        if bar is not None:
            bar.update(len(chunk))
    if bar is not None:
        bar.close()
    return written, digest.hexdigest()
