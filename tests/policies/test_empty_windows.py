"""Windows without any event get their report (0 groups), the same in the stream and the oracle.

From a view's first window with an event on, every closed window is reported: a window with
events as before, a window without any with 0 groups (``policies.base.EMPTY_WINDOWS_AFTER_DATA``
of them at most after a window with events). The streamed run, restarted at random moments and
fed partials at least once, releases what the batch oracle computes from the events and the
time that has passed (a heartbeat at the end).
"""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from policies.base import EMPTY_WINDOWS_AFTER_DATA, END_OF_STREAM, Release, SuppressionReport
from policies.compile import compile_spec
from policies.oracle import evaluate_view
from policies.pseudonymise import Pseudonymiser
from policies.spec import NoiseSpec
from policies.testing import arrival_order, run_stream
from tests.policies.harness import T0, rich_events, rich_spec, seeded_ring

pytestmark = pytest.mark.unit

FAST = settings(max_examples=60, deadline=None)
WIDTH, LATENESS = 1_000, 1_500
# 4 noised measures and the release decision at ε = 1: 3 windows of 4 per period are paid for.
NOISE = NoiseSpec(
    "geometric", 1.0, 15.0, 4_000, max_groups=2, max_contributions=2, value_bound=100.0, margin=1
)
NOISE_KEY = bytes(range(32))
CAP = EMPTY_WINDOWS_AFTER_DATA

within_window = rich_events(
    [f"subject-{i}" for i in range(5)], span_ms=WIDTH - 1, min_size=1, max_size=40
)
# Where the events' windows lie: close together, a quiet span, or one longer than the cap.
window_offsets = st.lists(
    st.one_of(st.integers(0, 6), st.integers(0, 40), st.integers(CAP - 5, CAP + 40)),
    min_size=1,
    max_size=5,
)


def spread(events: list[dict[str, Any]], offsets: list[int]) -> list[dict[str, Any]]:
    """The events moved into the windows ``offsets`` (in turns), each keeping its instant."""
    return [{**e, "t": e["t"] + offsets[i % len(offsets)] * WIDTH} for i, e in enumerate(events)]


def is_empty(release: Release) -> bool:
    report = release.report
    return not release.groups and (report.events_published, report.events_suppressed) == (0, 0)


@FAST
@given(
    events=within_window,
    offsets=window_offsets,
    partitions=st.integers(1, 4),
    batch=st.integers(1, 9),
    seed=st.integers(0, 10_000),
    delay=st.sampled_from([0, 2_000]),
    passed=st.one_of(st.none(), st.integers(0, 60 * WIDTH), st.just(10**6 * WIDTH)),
    closed_only=st.booleans(),
    noised=st.booleans(),
)
def test_streamed_releases_every_window_like_the_oracle_across_restarts(
    events: list[dict[str, Any]],
    offsets: list[int],
    partitions: int,
    batch: int,
    seed: int,
    delay: int,
    passed: int | None,
    closed_only: bool,
    noised: bool,
) -> None:
    spec = rich_spec(k=2, lateness_ms=LATENESS, delay_ms=delay, noise=NOISE if noised else None)
    key = NOISE_KEY if noised else None
    view = compile_spec(spec, keyring=seeded_ring(), noise_key=key)
    moved = spread(events, offsets)
    arrived = arrival_order(moved, "t", LATENESS, seed)
    # Time passes beyond the last event: every partition ends with a heartbeat that says so.
    heartbeat = None if passed is None else max(e["t"] for e in moved) + passed
    run = run_stream(
        view,
        arrived,
        "who",
        partitions=partitions,
        batch=batch,
        redeliver_seed=seed,
        closed_only=closed_only,
        heartbeat=heartbeat,
        restart_seed=seed,
    )
    assert run.outcome.late == 0
    pseudonymiser = Pseudonymiser(seeded_ring(), spec.contract)
    oracle = evaluate_view(spec, arrived, pseudonymiser, key, watermark=heartbeat)
    assert run.releases == oracle
    starts = [r.window.start for r in run.releases]
    assert starts == sorted(set(starts))  # each window once, in time order
    data = {e["t"] - e["t"] % WIDTH for e in moved if e["kind"] != "z"}  # "z": filtered out
    if not data:
        assert run.releases == []  # nothing before the first window with an event
        return
    assert starts[0] == min(data)
    # Every window from there on, but past the cap in a quiet span (until the next event).
    for before, after in zip(starts, starts[1:], strict=False):
        if after != before + WIDTH:
            last_data = max(d for d in data if d <= before)
            assert (before - last_data, after in data) == (CAP * WIDTH, True)
    # Up to the last window with events, or as far as the time passed (and the cap) allow.
    last = max(data)
    if heartbeat is not None:
        closed = (heartbeat - delay - WIDTH) // WIDTH * WIDTH  # the last window ended by then
        last = max(last, min(last + CAP * WIDTH, closed))
    assert starts[-1] == last
    empties = [r for r in run.releases if r.window.start not in data]
    assert all(is_empty(r) for r in empties)
    assert all(r.report.groups_published == r.report.groups_suppressed == 0 for r in empties)
    if noised:  # an empty window spends ε like any other: its report looks like any other
        assert all(r.epsilon > 0 or r.report.withheld_reason for r in run.releases)


def test_a_heartbeat_years_ahead_releases_at_most_the_cap_of_empty_windows() -> None:
    spec = rich_spec(k=2, lateness_ms=LATENESS)
    view = compile_spec(spec, keyring=seeded_ring())
    merger = view.merger(["p0", "p1"])
    agg = view.partition_state("p0")
    agg.process([(0, {"who": "subject-1", "t": T0 + 10, "kind": "a", "x": 0.2, "v": 1})])
    merger.merge(agg.drain_partials())
    years = T0 + 3 * 365 * 86_400_000
    for source in ("p0", "p1"):
        merger.observe_watermark(source, years)
    releases = merger.release_ready()
    assert [r.window.start for r in releases] == [T0 + i * WIDTH for i in range(CAP + 1)]
    assert releases[1:] and all(is_empty(r) for r in releases[1:])
    assert releases[1].report == SuppressionReport(2, 0, 0, 0, 0)
    # Later steps release nothing more until an event; then the windows after it.
    assert merger.release_ready() == []
    agg.process([(1, {"who": "subject-2", "t": years + 1, "kind": "a", "x": 0.2, "v": 1})])
    merger.merge(agg.drain_partials())
    for source in ("p0", "p1"):
        merger.observe_watermark(source, years + 5 * WIDTH + 1)
    later = [r.window.start - (years - years % WIDTH) for r in merger.release_ready()]
    assert later == [0, WIDTH, 2 * WIDTH, 3 * WIDTH, 4 * WIDTH]


def test_an_end_of_stream_is_no_time_passing() -> None:
    """A finished replay closes its windows, but empty ones only as far as time has passed."""
    spec = rich_spec(k=2, lateness_ms=LATENESS)
    view = compile_spec(spec, keyring=seeded_ring())
    merger = view.merger(["p0", "p1"])
    agg = view.partition_state("p0")
    agg.process(
        [
            (0, {"who": "subject-1", "t": T0, "kind": "a", "x": 0.2, "v": 1}),
            (1, {"who": "subject-1", "t": T0 + 3 * WIDTH, "kind": "a", "x": 0.2, "v": 1}),
        ]
    )
    merger.merge(agg.drain_partials())
    merger.observe_watermark("p0", T0 + 9 * WIDTH)  # a heartbeat on p0 only...
    for source in ("p0", "p1"):
        merger.observe_watermark(source, END_OF_STREAM)  # ...then both end
    starts = [r.window.start - T0 for r in merger.release_ready()]
    assert starts == [0, WIDTH, 2 * WIDTH, 3 * WIDTH]  # p1 never said time passed
