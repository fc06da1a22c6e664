"""A worker's C heap (``broker.worker.heap``, issue 17): large buffers are mapped and returned
whole, and what the heaps hold free goes back to the system on ``trim``."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from broker.worker.heap import Heap

MIB = 1 << 20
ROOT = Path(__file__).resolve().parents[2]


def _anon_rss() -> int:
    """Resident anonymous memory of this process (bytes)."""
    with open("/proc/self/status", encoding="ascii") as status:
        for line in status:
            if line.startswith("RssAnon:"):
                return int(line.split()[1]) * 1024
    raise AssertionError("no RssAnon in /proc/self/status")


@pytest.fixture(scope="module")
def heap() -> Heap:
    found = Heap()
    if not found.available or found.stats() is None:
        pytest.skip("not glibc 2.33+: the worker leaves the allocator alone")
    assert found.tune()
    return found


LARGE_BUFFERS = """
from broker.worker.heap import MMAP_THRESHOLD, Heap

MIB = 1 << 20
heap = Heap()
assert heap.tune()
before = heap.stats()
# Freed large blocks used to raise glibc's threshold, so that later ones of that size were
# carved out of the heap; a fixed threshold keeps mapping them.
for _ in range(3):
    buffers = [bytearray(4 * MIB) for _ in range(8)]
    held = heap.stats()
    assert held.mapped - before.mapped >= 8 * 4 * MIB, (before, held)
    assert held.heap - before.heap < 4 * MIB, (before, held)  # not in the heap
    del buffers
    after = heap.stats()
    assert after.mapped - before.mapped < 4 * MIB, (before, after)  # unmapped on free
assert MMAP_THRESHOLD <= 256 * 1024
"""


def test_a_large_buffer_is_mapped_on_its_own_and_returned_whole(heap: Heap) -> None:
    # In a fresh interpreter, as a worker process tunes its heap at start: the test session's
    # own heap (many tests, many threads) is no model of a worker's.
    done = subprocess.run(
        [sys.executable, "-c", LARGE_BUFFERS],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert done.returncode == 0, done.stderr[-2000:]


def test_trim_returns_the_free_pages_under_a_live_block(heap: Heap) -> None:
    # 64 MiB in blocks under the threshold, each followed by a small block that stays: the
    # heap shrinks only from its top, so the freed pages between them stay resident until
    # trimmed.
    blocks, pins = [], []
    for _ in range(4096):
        blocks.append(bytes(16 * 1024))
        pins.append(bytes(600))  # above pymalloc's 512 bytes: from malloc too
    del blocks
    stats = heap.stats()
    assert stats is not None and stats.free >= 48 * MIB
    resident = _anon_rss()
    assert heap.trim()
    assert resident - _anon_rss() >= 32 * MIB
    assert len(pins) == 4096
