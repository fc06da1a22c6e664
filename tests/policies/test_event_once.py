"""Each event id counts at most once per (view, window, subject), however often it reaches raw.

Re-sent batches, retries after a timeout, a second gateway, a provider producing twice: the
copies land on the subject's raw partition, and the fold keeps the first in offset order.
"""

from __future__ import annotations

import dataclasses
import json
import random
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from policies.aggregate import Aggregator
from policies.compile import compile_spec
from policies.oracle import evaluate_view
from policies.pseudonymise import Pseudonymiser
from policies.spec import ViewSpec
from policies.testing import arrival_order, run_stream
from tests.policies.harness import T0, rich_events, rich_spec, seeded_ring

pytestmark = pytest.mark.unit

SUBJECTS = [f"vehicle-{i}" for i in range(5)]


def spec(lateness_ms: int = 1_500) -> ViewSpec:
    return dataclasses.replace(rich_spec(k=2, lateness_ms=lateness_ms), event_id_field="eid")


def oracle(view_spec: ViewSpec, events: list[dict[str, Any]]) -> Any:
    return evaluate_view(view_spec, events, Pseudonymiser(seeded_ring(), view_spec.contract))


events_strategy = rich_events(SUBJECTS).map(
    lambda rows: [{**row, "eid": f"event-{i}"} for i, row in enumerate(rows)]
)


def with_copies(arrived: list[dict[str, Any]], seed: int) -> tuple[list[dict[str, Any]], int]:
    """Re-send some events later in the stream: some identical, some with another value.

    Returns the stream and the number of copies the view folds (a copy of a filtered event
    is filtered like its original)."""
    rng = random.Random(seed)
    out = list(arrived)
    copies = 0
    passes = spec().passes
    for i, event in enumerate(arrived):
        for _ in range(rng.choice([0, 0, 1, 3])):
            copy = dict(event) if rng.random() < 0.5 else {**event, "v": event["v"] + 1_000}
            if rng.random() < 0.3:
                copy["eid"] = f"  {event['eid'].upper()}\u200b"  # a variant of the same id
            out.insert(rng.randrange(out.index(event, i) + 1, len(out) + 1), copy)
            copies += passes(copy)
    return out, copies


@settings(max_examples=80, deadline=None)
@given(
    events=events_strategy,
    partitions=st.integers(1, 4),
    batch=st.integers(1, 9),
    seed=st.integers(0, 10_000),
    closed_only=st.booleans(),
)
def test_copies_change_nothing_published(
    events: list[dict[str, Any]], partitions: int, batch: int, seed: int, closed_only: bool
) -> None:
    view_spec = spec()
    arrived = arrival_order(events, "t", 1_500, seed)
    resent, copies = with_copies(arrived, seed)
    run = run_stream(
        compile_spec(view_spec, keyring=seeded_ring()),
        resent,
        "who",
        partitions=partitions,
        batch=batch,
        redeliver_seed=seed,
        closed_only=closed_only,
    )
    assert run.outcome.late + run.outcome.duplicate == copies  # no original is ever late
    assert run.releases == oracle(view_spec, events)  # equal to the distinct events' oracle
    assert run.releases == oracle(view_spec, resent)  # and the oracle drops copies alike
    out = run.outcome
    assert out.folded + out.filtered + out.late + out.duplicate == len(resent)


def test_five_copies_count_once_and_are_reported() -> None:
    view_spec = dataclasses.replace(spec(), k=2, filter_field=None, filter_values=())
    base = {"t": T0 + 10, "kind": "a", "x": 0.2, "v": 7, "url": "u1"}
    events = [{**base, "who": "vehicle-1", "eid": "e1"} for _ in range(5)]
    events.append({**base, "who": "vehicle-2", "eid": "e2"})
    run = run_stream(compile_spec(view_spec, keyring=seeded_ring()), events, "who")
    assert run.outcome.duplicate == 4
    [release] = run.releases
    [group] = release.groups
    assert group.measures["events"] == 2
    assert group.measures["total"] == 14


def test_without_an_event_id_field_nothing_is_deduplicated() -> None:
    view_spec = dataclasses.replace(spec(), event_id_field=None, filter_field=None)
    base = {"t": T0 + 10, "kind": "a", "x": 0.2, "v": 7, "url": "u1", "eid": "same"}
    events = [{**base, "who": f"vehicle-{i % 2}"} for i in range(6)]
    run = run_stream(compile_spec(view_spec, keyring=seeded_ring()), events, "who")
    assert run.outcome.duplicate == 0
    assert run.releases[0].groups[0].measures["events"] == 6


def test_the_same_id_of_another_subject_is_another_event() -> None:
    view_spec = dataclasses.replace(spec(), filter_field=None)
    base = {"t": T0 + 10, "kind": "a", "x": 0.2, "v": 7, "url": "u1", "eid": "shared-id"}
    events = [{**base, "who": "vehicle-1"}, {**base, "who": "vehicle-2"}]
    run = run_stream(compile_spec(view_spec, keyring=seeded_ring()), events, "who")
    assert run.outcome.duplicate == 0
    assert run.releases[0].groups[0].measures["events"] == 2


def _aggregator(view_spec: ViewSpec) -> Aggregator:
    return Aggregator(view_spec, Pseudonymiser(seeded_ring(), view_spec.contract), "p0")


def test_a_restored_checkpoint_still_knows_the_ids_folded() -> None:
    view_spec = dataclasses.replace(spec(), filter_field=None)
    event = {"who": "vehicle-1", "t": T0 + 10, "kind": "a", "x": 0.2, "v": 1, "url": "u1"}
    first = _aggregator(view_spec)
    first.process([(0, {**event, "eid": "evt-secret-1"})])
    state = json.loads(json.dumps(first.snapshot()))
    assert "vehicle-1" not in json.dumps(state) and "evt-secret-1" not in json.dumps(state["seen"])
    second = _aggregator(view_spec)
    second.restore(state)
    outcome = second.process([(1, {**event, "eid": "evt-secret-1"}), (2, {**event, "eid": "e2"})])
    assert (outcome.duplicate, outcome.folded) == (1, 1)


def test_ids_are_forgotten_when_their_window_closes() -> None:
    view_spec = dataclasses.replace(spec(lateness_ms=0), filter_field=None)
    event = {"who": "vehicle-1", "kind": "a", "x": 0.2, "v": 1, "url": "u1", "eid": "evt-secret-1"}
    agg = _aggregator(view_spec)
    agg.process([(0, {**event, "t": T0 + 10}), (1, {**event, "t": T0 + 5_000, "eid": "e2"})])
    agg.drain_closed()
    assert list(agg.snapshot()["seen"]) == [str(T0 + 5_000 - (T0 + 5_000) % 1_000)]
    agg.drain_closed(final=True)
    assert agg.snapshot()["seen"] == {}
