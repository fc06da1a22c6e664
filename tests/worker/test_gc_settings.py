"""A worker process's collector settings (``broker.worker.app.tune_gc``, issue 17): what start-up
built is frozen, young collections run less often, and cycles made later are still collected."""

from __future__ import annotations

import gc
import weakref
from collections.abc import Iterator

import pytest

from broker.worker.app import GC_THRESHOLDS, tune_gc


@pytest.fixture
def restored_gc() -> Iterator[None]:
    """The test process's collector as it was, whatever the test did to it."""
    thresholds = gc.get_threshold()
    yield
    gc.unfreeze()
    gc.set_threshold(*thresholds)


class _Node:
    def __init__(self) -> None:
        self.other: _Node | None = None


def test_tune_gc_freezes_startup_and_raises_the_thresholds(restored_gc: None) -> None:
    started = [{"startup": i} for i in range(100)]  # tracked containers, alive at the call
    tune_gc()
    assert gc.get_threshold() == GC_THRESHOLDS
    assert GC_THRESHOLDS[0] > 700  # CPython's default: the change this setting exists for
    assert gc.get_freeze_count() >= len(started)


def test_cycles_made_after_tuning_are_still_collected(restored_gc: None) -> None:
    tune_gc()
    a, b = _Node(), _Node()
    a.other, b.other = b, a  # a reference cycle: only the cyclic collector frees it
    gone = weakref.ref(a)
    del a, b
    gc.collect()
    assert gone() is None
