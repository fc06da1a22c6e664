"""The C heap of a worker process: large buffers go back to the system, free pages too.

What the worker frees, Python hands back to the C allocator, and glibc's malloc keeps much of
it (issue 17, ``docs/benchmarks.md``, "Memory: flow control"). Two habits of glibc made a
worker's resident memory creep with the number of events read although what it holds stays
bounded:

* the *dynamic mmap threshold*: a block above 128 KiB is first mapped on its own and
  unmapped when freed, but each such free raises the threshold to the block's size (up to
  32 MiB), so from then on fetch responses, checkpoints and merger snapshots of a few MiB are
  carved out of the heap, and every one of them leaves a hole of its size behind;
* a heap is only shrunk from its top: free pages under a live block stay resident.

``tune`` fixes the threshold (``mallopt``; a fixed value also stops the dynamic adjustment)
so large transient buffers are mapped and returned whole, and ``trim`` asks glibc to return
every free page of every arena (``malloc_trim(0)``; the worker calls it every
``TRIM_EVERY_S``). Both are no-ops where the C library is not glibc.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
from dataclasses import dataclass

_log = logging.getLogger(__name__)
# mallopt parameters (glibc's malloc.h)
M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3
# glibc's own starting values, kept fixed instead of growing with the largest block freed.
MMAP_THRESHOLD = 128 * 1024
TRIM_THRESHOLD = 128 * 1024
TRIM_EVERY_S = 10.0


class MallInfo2(ctypes.Structure):
    """glibc's ``struct mallinfo2`` (2.33 and later): byte counts over every arena."""

    _fields_ = [
        (name, ctypes.c_size_t)
        for name in (
            "arena",  # bytes obtained from the system for the heaps (sbrk and arena mmaps)
            "ordblks",
            "smblks",
            "hblks",  # blocks mapped on their own
            "hblkhd",  # their bytes
            "usmblks",
            "fsmblks",
            "uordblks",  # bytes in use in the heaps
            "fordblks",  # bytes free in the heaps
            "keepcost",
        )
    ]


@dataclass(frozen=True)
class HeapStats:
    """What the heaps hold: obtained from the system, in use, free (bytes)."""

    heap: int
    in_use: int
    free: int
    mapped: int


class Heap:
    """glibc's malloc of this process, or nothing (``available`` False)."""

    def __init__(self) -> None:
        self._libc: ctypes.CDLL | None = None
        try:
            libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
            libc.mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
            libc.malloc_trim.argtypes = [ctypes.c_size_t]
        except (OSError, AttributeError):  # not glibc (musl, macOS): leave the allocator alone
            return
        self._libc = libc

    @property
    def available(self) -> bool:
        """Whether this process's C library is glibc's."""
        return self._libc is not None

    def tune(self) -> bool:
        """Fix the mmap and trim thresholds (see the module docstring); whether it took."""
        if self._libc is None:
            return False
        done = bool(self._libc.mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and bool(
            self._libc.mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD)
        )
        if not done:
            _log.warning("malloc thresholds could not be set: the heap may creep")
        return done

    def trim(self) -> bool:
        """Return free heap pages to the system; whether any were."""
        return self._libc is not None and bool(self._libc.malloc_trim(0))

    def stats(self) -> HeapStats | None:
        """The heaps' totals (None without glibc 2.33+)."""
        if self._libc is None:
            return None
        try:
            info = self._libc.mallinfo2
        except AttributeError:
            return None
        info.restype = MallInfo2
        m = info()
        return HeapStats(m.arena, m.uordblks, m.fordblks, m.hblkhd)
