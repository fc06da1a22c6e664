"""Differential privacy that holds what it says: contribution bounds enforced on pseudonyms,
noise scaled to the sensitivity they imply, a noisy release decision with its δ, and a ledger
that charges every draw. Checked against definitions written out here, not the module's code."""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from policies.aggregate import Aggregator
from policies.base import END_OF_STREAM
from policies.compile import compile_spec
from policies.noise import draws_per_window, released, sensitivity
from policies.oracle import evaluate_view
from policies.pseudonymise import Pseudonymiser
from policies.spec import NoiseSpec
from policies.testing import run_stream
from policies.window import combine
from tests.policies.harness import T0, rich_events, rich_spec, seeded_ring

pytestmark = pytest.mark.unit

KEY = bytes(range(32))
SUBJECTS = [f" Subject-{i:02d} " for i in range(8)]
bounds = st.tuples(st.integers(1, 3), st.integers(1, 3))  # (max_groups, max_contributions)
records = rich_events(
    SUBJECTS,
    span_ms=2_999,
    kinds=("a", "b"),
    xs=(0.2, 1.4, 2.6),
    values=st.integers(-500, 500),
    urls=("u1", "u2", "u3", "u4"),
    min_size=1,
    max_size=90,
)
FAST = settings(max_examples=80, deadline=None)


def noise(groups: int, contributions: int, **more: Any) -> NoiseSpec:
    return NoiseSpec("geometric", 1.0, 1e9, 10**9, groups, contributions, value_bound=100.0, **more)


def reference(rows: Iterable[dict[str, Any]], groups: int, contributions: int) -> Counter[Any]:
    """Events kept per (window, group): for every subject and window, its first ``groups``
    groups and its first ``contributions`` events in each, in input order (the definition)."""
    kept: Counter[Any] = Counter()
    taken: dict[tuple[int, str], Counter[Any]] = {}
    for row in rows:
        start = row["t"] - row["t"] % 1_000
        group = (row["kind"], round(row["x"]))
        mine = taken.setdefault((start, row["who"].strip().casefold()), Counter())
        if (group in mine or len(mine) < groups) and mine[group] < contributions:
            mine[group] += 1
            kept[(start, group)] += 1
    return kept


def totals(spec: Any, rows: list[dict[str, Any]], cut: int | None = None) -> dict[Any, Any]:
    """Pre-noise totals per (window, group) from the aggregator (restarted at ``cut``)."""
    pseudonymiser = Pseudonymiser(seeded_ring(), spec.contract)
    agg = Aggregator(spec, pseudonymiser, "p0")
    indexed = list(enumerate(rows))
    if cut is not None:
        agg.process(indexed[:cut])
        state = agg.snapshot()
        agg = Aggregator(spec, pseudonymiser, "p0")  # a restarted worker
        agg.restore(state)
        agg.process(indexed[cut - 3 :])  # a replay from before the checkpoint: skipped
    else:
        agg.process(indexed)
    out = {}
    for part in agg.drain_closed(final=True):
        out[(part.window_start, part.group)] = combine(spec, part.group, [part])
    return out


@FAST
@given(rows=records, limits=bounds, cut=st.integers(3, 90))
def test_each_subject_is_held_to_its_bounds_deterministically(
    rows: list[dict[str, Any]], limits: tuple[int, int], cut: int
) -> None:
    groups, contributions = limits
    spec = rich_spec(noise=noise(groups, contributions))
    expected = reference([r for r in rows if r["kind"] in ("a", "b")], groups, contributions)
    got = totals(spec, rows)
    assert {key: t.events for key, t in got.items()} == dict(expected)
    # A restart from a checkpoint, with a replay, keeps exactly the same contributions.
    again = totals(spec, rows, min(cut, len(rows)))
    assert {k: (t.events, t.subjects, t.measures) for k, t in again.items()} == {
        k: (t.events, t.subjects, t.measures) for k, t in got.items()
    }


@FAST
@given(rows=records, limits=bounds, extra=records, variant=st.sampled_from(["", " ", "\u200b"]))
def test_one_subject_moves_each_measure_by_at_most_its_sensitivity(
    rows: list[dict[str, Any]], limits: tuple[int, int], extra: list[dict[str, Any]], variant: str
) -> None:
    # D and D + (all the records of one new subject, sent under id variants): per window, the
    # L1 distance between the two vectors of groups is at most the Δ the noise is scaled to.
    groups, contributions = limits
    spec = rich_spec(noise=noise(groups, contributions))
    newcomer = [{**r, "who": f"{variant}NEWCOMER{variant}"} for r in extra]
    before, after = totals(spec, rows), totals(spec, rows + newcomer)
    windows = {start for start, _ in (*before, *after)}
    for start in windows:
        keys = {k for k in (*before, *after) if k[0] == start}
        for kind, name in [("count", "events"), ("distinct_subjects", "people"), ("sum", "total")]:
            moved = sum(
                abs(_value(after.get(key), name) - _value(before.get(key), name)) for key in keys
            )
            assert moved <= sensitivity(kind, spec.noise), (kind, start)  # type: ignore[arg-type]


def _value(t: Any, name: str) -> float:
    return 0.0 if t is None else float(t.measures[name])


def test_sums_are_clamped_to_the_value_bound() -> None:
    spec = rich_spec(noise=noise(1, 3))
    rows = [{"who": "s", "t": T0, "kind": "a", "x": 0.2, "v": v, "url": "u"} for v in (1e6, -40)]
    [(_, t)] = totals(spec, rows).items()
    assert t.measures["total"] == 100.0 - 40.0


@FAST
@given(rows=records, limits=bounds, partitions=st.integers(1, 3))
def test_streamed_noisy_releases_equal_the_oracle_and_never_publish_below_k(
    rows: list[dict[str, Any]], limits: tuple[int, int], partitions: int
) -> None:
    groups, contributions = limits
    spec = rich_spec(k=2, noise=noise(groups, contributions, margin=0))
    view = compile_spec(spec, keyring=seeded_ring(), noise_key=KEY)
    run = run_stream(view, rows, "who", partitions=partitions)
    pseudonymiser = Pseudonymiser(seeded_ring(), spec.contract)
    assert run.releases == evaluate_view(spec, rows, pseudonymiser, KEY)
    true = totals(spec, rows)
    for release in run.releases:
        cost = float(draws_per_window(spec.measures)) * spec.noise.epsilon  # type: ignore[union-attr]
        assert release.epsilon == cost  # every noised measure and the decision are charged
        for group in release.groups:
            key = (release.window.start, (group.group["kind"], group.group["x"]))
            assert true[key].subjects >= spec.k  # k holds on true, bounded subjects


def test_the_release_decision_is_a_noisy_threshold_with_the_stated_tail() -> None:
    # A group at exactly k subjects is released iff its draw Y >= margin: P = q^m / (1 + q).
    n, k = 20_000, 5
    for groups, margin in [(1, 0), (1, 2), (2, 1)]:
        spec = noise(groups, 1, margin=margin)
        hits = sum(
            released(k, k, spec, KEY, "c", "v", w, {"g": 1}) for w in range(0, n * 1_000, 1_000)
        )
        q = math.exp(-1.0 / groups)
        p = q**margin / (1 + q) if margin else 1 / (1 + q)  # P(Y >= 0) = 1 / (1 + q)
        assert abs(hits / n - p) <= 4 * math.sqrt(p * (1 - p) / n), (groups, margin)
        assert not released(k - 1, k, spec, KEY, "c", "v", 0, {"g": 1})  # never below k


@pytest.mark.parametrize(
    ("epsilon", "groups", "delta", "margin"),
    [(1.0, 1, 1e-6, 14), (1.0, 1, 1e-5, 12), (0.5, 1, 1e-6, 27), (1.0, 2, 1e-6, 29)],
)
def test_selection_margin_is_the_smallest_with_delta_at_most_the_contract(
    epsilon: float, groups: int, delta: float, margin: int
) -> None:
    from contracts.model import Noise

    n = Noise(epsilon=epsilon, budget=10.0, period="P1D", max_groups=groups, delta=delta)
    q = math.exp(-epsilon / groups)
    assert n.selection_margin == margin
    assert groups * q**margin / (1 + q) <= delta < groups * q ** (margin - 1) / (1 + q)
    assert n.selection_delta == pytest.approx(groups * q**margin / (1 + q))


def test_end_of_stream_releases_every_window_once() -> None:
    # A bounded subject's extra records are dropped, not deferred to a later release.
    spec = rich_spec(k=2, noise=noise(1, 1, margin=0))
    rows = [
        {"who": w, "t": T0 + i, "kind": "a", "x": 0.2, "v": 1, "url": "u"}
        for i, w in enumerate(["p", "q", "p", "q", "p"])
    ]
    view = compile_spec(spec, keyring=seeded_ring(), noise_key=KEY)
    agg = view.partition_state("p0")
    outcome = agg.process(enumerate(rows))
    assert (outcome.folded, outcome.bounded) == (2, 3)
    merger = view.merger(["p0"])
    merger.merge(agg.drain_closed(final=True))
    merger.observe_watermark("p0", END_OF_STREAM)
    [release] = merger.release_ready()
    assert release.report.events_published + release.report.events_suppressed == 2
