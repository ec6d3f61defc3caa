"""Handing freed heap memory back to the operating system (glibc only).

The analyzer's window arrays shrink and grow as windows slide; glibc keeps the freed pieces of
its heap mapped, so a long-running process's resident size creeps above what it really uses.
`malloc_trim(0)` returns those pages. It is called on a slow timer (not per trade); on other C
libraries it is a no-op.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
from collections.abc import Callable

log = logging.getLogger(__name__)


def _load_trim() -> Callable[[], None] | None:
    name = ctypes.util.find_library("c")
    if not name:
        return None
    try:
        libc = ctypes.CDLL(name)
        trim = libc.malloc_trim
    except (OSError, AttributeError):
        return None
    trim.argtypes = [ctypes.c_size_t]
    trim.restype = ctypes.c_int
    return lambda: trim(0)


_TRIM = _load_trim()


def release_free_heap() -> bool:
    """Returns freed heap pages to the OS; False where the C library cannot."""
    if _TRIM is None:
        return False
    _TRIM()
    return True
