"""Invariants over random event sets: streamed == oracle, no raw values out, k, lattice, late."""

from __future__ import annotations

import json
import random
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from policies.aggregate import Partial
from policies.base import END_OF_STREAM, Release
from policies.compile import compile_spec
from policies.oracle import evaluate_view
from policies.pseudonymise import KeyRing, Pseudonymiser
from policies.spec import NoiseSpec
from policies.testing import arrival_order, run_stream
from policies.window import Merger
from tests.policies.harness import T0, rich_events, rich_spec, seeded_ring

pytestmark = pytest.mark.unit

FAST = settings(max_examples=60, deadline=None)
SUBJECTS = [f"subject-{i:03d}-raw" for i in range(6)]
URLS = [f"https://listing.example/{i}-raw" for i in range(5)]
# 4 noised measures and the release decision at ε = 1: the budget pays for 3 of 4 windows.
NOISE = NoiseSpec(
    "geometric", 1.0, 15.0, 4_000, max_groups=2, max_contributions=2, value_bound=100.0, margin=1
)
NOISE_KEY = bytes(range(32))


def ring() -> KeyRing:
    return seeded_ring()


values = st.one_of(
    st.none(), st.integers(-50, 200), st.floats(-1e6, 1e6, allow_nan=False, allow_infinity=False)
)
events_strategy = rich_events(
    SUBJECTS,
    values=values,
    urls=URLS,
    extra={"secret": st.just("never-read")},
    min_size=12,
    max_size=80,
)


def oracle(
    spec: Any, events: list[dict[str, Any]], noise_key: bytes | None = None
) -> list[Release]:
    return evaluate_view(spec, events, Pseudonymiser(ring(), spec.contract), noise_key)


@FAST
@given(
    events=events_strategy,
    partitions=st.integers(1, 4),
    batch=st.integers(1, 9),
    seed=st.integers(0, 10_000),
    delay=st.sampled_from([0, 1_000]),
    closed_only=st.booleans(),
)
def test_streamed_equals_oracle_within_lateness(
    events: list[dict[str, Any]],
    partitions: int,
    batch: int,
    seed: int,
    delay: int,
    closed_only: bool,
) -> None:
    spec = rich_spec(k=2, lateness_ms=1_500, delay_ms=delay)
    arrived = arrival_order(events, "t", 1_500, seed)
    run = run_stream(
        compile_spec(spec, keyring=ring()),
        arrived,
        "who",
        partitions=partitions,
        batch=batch,
        redeliver_seed=seed,
        closed_only=closed_only,
    )
    assert run.outcome.late == 0
    assert run.releases == oracle(spec, events)
    accounted = sum(r.report.events_published + r.report.events_suppressed for r in run.releases)
    assert accounted == run.outcome.folded  # every folded event is published or suppressed
    assert run.outcome.folded + run.outcome.filtered == len(events)
    assert [r.window.start for r in run.releases] == sorted(r.window.start for r in run.releases)


@FAST
@given(events=events_strategy, partitions=st.integers(1, 4), seed=st.integers(0, 10_000))
def test_any_arrival_order_equals_oracle_when_watermarks_hold(
    events: list[dict[str, Any]], partitions: int, seed: int
) -> None:
    spec = rich_spec(k=2, lateness_ms=10**9)  # watermarks never close a window before the end
    shuffled = list(events)
    random.Random(seed).shuffle(shuffled)
    for closed_only in (False, True):
        run = run_stream(
            compile_spec(spec, keyring=ring()),
            shuffled,
            "who",
            partitions=partitions,
            closed_only=closed_only,
        )
        assert run.releases == oracle(spec, events)


@FAST
@given(events=events_strategy, partitions=st.integers(1, 3), seed=st.integers(0, 10_000))
def test_noisy_streamed_equals_oracle_and_budget_holds(
    events: list[dict[str, Any]], partitions: int, seed: int
) -> None:
    spec = rich_spec(k=2, lateness_ms=1_500, noise=NOISE)
    view = compile_spec(spec, keyring=ring(), noise_key=NOISE_KEY)
    arrived = arrival_order(events, "t", 1_500, seed)
    run = run_stream(view, arrived, "who", partitions=partitions)
    # The oracle reads the raw topic's order: the bounds keep each subject's first records.
    assert run.releases == oracle(spec, arrived, NOISE_KEY)
    spent: dict[int, float] = {}
    for release in run.releases:
        period = release.window.start // NOISE.period_ms
        spent[period] = spent.get(period, 0.0) + release.epsilon
    assert all(total <= NOISE.budget for total in spent.values())


@FAST
@given(events=events_strategy, k=st.integers(2, 4))
def test_no_raw_value_and_every_group_has_k_subjects(events: list[dict[str, Any]], k: int) -> None:
    spec = rich_spec(k=k)
    run = run_stream(compile_spec(spec, keyring=ring()), events, "who", partitions=2)
    pz = Pseudonymiser(ring(), spec.contract)
    secrets = set(SUBJECTS) | set(URLS) | {"never-read"}
    secrets |= {
        pz.pseudonym(f, v, e)
        for f, vs in (("who", SUBJECTS), ("url", URLS))
        for v in vs
        for e in range(T0 // 2_000 - 1, T0 // 2_000 + 5)
    }
    for release in run.releases:
        text = repr(release) + repr(release.to_dict())
        assert not any(s in text for s in secrets)
        for group in release.groups:
            members = {
                e["who"]
                for e in events
                if release.window.start <= e["t"] < release.window.end
                and e["kind"] == group.group["kind"]
                and round(e["x"]) == group.group["x"]
            }
            assert len(members) >= k
            assert group.measures["people"] == len(members)


def partials_of(events: list[dict[str, Any]], partitions: int) -> list[Partial]:
    spec = rich_spec(k=2, lateness_ms=10**9)
    view = compile_spec(spec, keyring=ring())
    out: list[Partial] = []
    for p in range(partitions):
        agg = view.partition_state(f"p{p}")
        for i, e in enumerate(events):
            if i % partitions == p:
                agg.process([(i, e)])
                out.extend(agg.drain_partials())  # many versions of the same partial
    return out


def merged_state(parts: list[Partial], sources: int = 3) -> list[Any]:
    merger = Merger(rich_spec(k=2, lateness_ms=10**9), [f"p{i}" for i in range(sources)], None)
    merger.merge(parts)
    return sorted(
        (d["window_start"], repr(d["group"]), d["source"], repr(d))
        for d in merger.snapshot()["open"]
    )


@FAST
@given(events=events_strategy, seed=st.integers(0, 10_000))
def test_merge_is_associative_commutative_idempotent(
    events: list[dict[str, Any]], seed: int
) -> None:
    parts = partials_of(events, 3)
    rng = random.Random(seed)
    shuffled = list(parts)
    rng.shuffle(shuffled)
    cut1, cut2 = sorted(rng.randrange(len(parts) + 1) for _ in range(2))
    a, b, c = shuffled[:cut1], shuffled[cut1:cut2], shuffled[cut2:]
    reference = merged_state(parts)
    assert merged_state(shuffled) == reference  # commutative
    assert merged_state(parts + shuffled) == reference  # idempotent
    # associative: (a ∪ b) ∪ c == a ∪ (b ∪ c), each side merged through a state round trip
    left = Merger(rich_spec(k=2, lateness_ms=10**9), ["p0", "p1", "p2"], None)
    left.merge(a + b)
    right = Merger(rich_spec(k=2, lateness_ms=10**9), ["p0", "p1", "p2"], None)
    right.merge(b + c)
    lhs = [Partial.from_dict(d) for d in left.snapshot()["open"]] + c
    rhs = a + [Partial.from_dict(d) for d in right.snapshot()["open"]]
    assert merged_state(lhs) == merged_state(rhs) == reference


@FAST
@given(events=events_strategy, late=events_strategy, seed=st.integers(0, 10_000))
def test_late_events_are_counted_and_never_change_a_release(
    events: list[dict[str, Any]], late: list[dict[str, Any]], seed: int
) -> None:
    spec = rich_spec(k=2, lateness_ms=500)
    view = compile_spec(spec, keyring=ring())
    agg = view.partition_state("p0")
    merger = view.merger(["p0"])
    arrived = arrival_order(events, "t", 500, seed)
    agg.process(enumerate(arrived))
    merger.merge(agg.drain_partials())
    merger.observe_watermark("p0", agg.watermark)
    released = merger.release_ready()
    before = {r.window.start: r for r in released}
    watermark = agg.watermark
    expected_late = sum(
        1 for e in late if e["kind"] != "z" and e["t"] - e["t"] % 1000 + 1000 <= watermark
    )
    outcome = agg.process((len(arrived) + i, e) for i, e in enumerate(late))
    assert outcome.late >= expected_late
    merger.merge(agg.drain_partials())
    merger.observe_watermark("p0", END_OF_STREAM)
    for release in merger.release_ready():
        assert release.window.start not in before  # a released window never reopens
    total = len(arrived) + len(late)
    assert (
        agg.outcome.folded + agg.outcome.filtered + agg.outcome.late + agg.outcome.outside == total
    )


@FAST
@given(events=events_strategy, released=st.booleans())
def test_merger_snapshot_json_is_its_snapshot_and_restores(
    events: list[dict[str, Any]], released: bool
) -> None:
    spec = rich_spec(k=2, lateness_ms=10**9, noise=NOISE)
    merger = compile_spec(spec, keyring=ring(), noise_key=NOISE_KEY).merger(["p0", "p1", "p2"])
    merger.merge(partials_of(events, 3))
    if released:  # a horizon, a spent ledger, fewer open windows
        for source in ("p0", "p1", "p2"):
            merger.observe_watermark(source, T0 + 2_000)
        merger.release_ready()
    expected = json.loads(json.dumps(merger.snapshot()))
    first = merger.snapshot_json()
    assert json.loads(first) == expected
    assert merger.snapshot_json() == first  # the cached partial texts are stable
    restored = compile_spec(spec, keyring=ring(), noise_key=NOISE_KEY).merger(["p0", "p1", "p2"])
    restored.restore(json.loads(first))
    assert restored.snapshot_json() == first
