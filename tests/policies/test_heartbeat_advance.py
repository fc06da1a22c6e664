"""A heartbeat (``Aggregator.advance``) moves a quiet source's watermark, in offset order."""

from __future__ import annotations

from typing import Any

import pytest

from policies.aggregate import Aggregator
from policies.base import NO_WATERMARK
from policies.pseudonymise import Pseudonymiser
from tests.policies.harness import T0, rich_spec, seeded_ring

pytestmark = pytest.mark.unit


def event(t: int, who: str = "a") -> dict[str, Any]:
    return {"who": who, "t": t, "kind": "a", "x": 0.2, "v": 1, "url": "u"}


def aggregator(lateness_ms: int = 500) -> Aggregator:
    spec = rich_spec(lateness_ms=lateness_ms)
    return Aggregator(spec, Pseudonymiser(seeded_ring(), spec.contract), "p0")


def test_a_heartbeat_closes_windows_of_a_source_that_saw_no_event() -> None:
    agg = aggregator()
    assert agg.watermark == NO_WATERMARK
    agg.advance(0, T0 + 3_000)  # no record here will be older than T0 + 3 s
    assert agg.watermark == T0 + 3_000 and agg.position == 0


def test_records_before_a_heartbeat_count_and_older_ones_after_it_are_late() -> None:
    agg = aggregator()
    before = agg.process([(0, event(T0 + 100))])
    agg.advance(1, T0 + 2_500)
    after = agg.process([(2, event(T0 + 200)), (3, event(T0 + 2_600))])
    assert (before.folded, after.late, after.folded) == (1, 1, 1)
    closed = agg.drain_closed()
    assert [p.window_start for p in closed] == [T0]  # the first window, with its one event
    assert closed[0].events == 1


def test_a_replayed_heartbeat_changes_nothing_and_survives_a_restore() -> None:
    agg = aggregator()
    agg.process([(0, event(T0 + 100)), (1, event(T0 + 200))])
    agg.advance(1, T0 + 9_000)  # at an offset already folded: a replay
    assert agg.watermark == T0 + 200 - 500
    agg.advance(2, T0 + 9_000)
    restored = aggregator()
    restored.restore(agg.snapshot())
    assert (restored.position, restored.watermark) == (2, T0 + 9_000)
    assert restored.advance(2, T0 + 20_000) is None and restored.watermark == T0 + 9_000


def test_a_heartbeat_never_moves_the_watermark_back() -> None:
    agg = aggregator()
    agg.process([(0, event(T0 + 5_000))])
    agg.advance(1, T0)
    assert agg.watermark == T0 + 5_000 - 500
