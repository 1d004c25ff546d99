"""Writing a file all at once or not at all: the one atomic-write helper the library, the
experiments and the benchmarks use for models, data, figures and reports."""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path


@contextlib.contextmanager
def atomic_write(path, mode: str = "wb"):
    """A context manager that writes `path` all at once or not at all.

    It yields a file object open on a temporary name beside `path`. When the block ends normally
    the file is flushed to disk, given the mode a newly created file would have (the process's
    umask, not mkstemp's 0600) and renamed onto `path`; if the block raises, the temporary file is
    removed and `path` is untouched. Parent folders are created.

    Args:
        path: the file to write (str or Path).
        mode: "wb" (default) or "w".

    Raises:
        ValueError: another mode.
    """
    if mode not in ("wb", "w"):
        raise ValueError(f"atomic_write writes a new file: mode 'wb' or 'w', got {mode!r}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(handle, mode) as file:
            yield file
            file.flush()
            os.fsync(file.fileno())
        os.chmod(temporary, 0o666 & ~_umask())
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temporary)
        raise


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask
