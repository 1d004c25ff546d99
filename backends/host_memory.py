"""How the process's C allocator keeps freed memory (glibc only; elsewhere nothing changes).

A training step allocates the same large arrays every time (im2col windows, activations) and frees
them by the step's end, when the backward has consumed the caches. glibc then returns the freed top
of its heap to the operating system, and the next step pays a page fault for every page it touches
again (measured: the default CNN step 25-30% slower). Keeping a pad of freed memory at the top of
the heap (mallopt M_TOP_PAD) lets each step reuse the previous step's pages.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import sys

M_TOP_PAD = -2  # glibc's mallopt parameter: bytes of free memory kept at the heap's top when trimming
TOP_PAD_BYTES = 256 * 2**20


def keep_freed_memory() -> bool:
    """Ask glibc to keep TOP_PAD_BYTES of freed heap for reuse; True if it was set. Skipped where
    DIYNN_KEEP_FREED_MEMORY=0, where MALLOC_TOP_PAD_ is set by the user, and off glibc."""
    if os.environ.get("DIYNN_KEEP_FREED_MEMORY") == "0" or "MALLOC_TOP_PAD_" in os.environ:
        return False
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # not glibc (musl has no mallopt)
        return False
    mallopt.argtypes, mallopt.restype = (ctypes.c_int, ctypes.c_int), ctypes.c_int
    return mallopt(M_TOP_PAD, TOP_PAD_BYTES) == 1
