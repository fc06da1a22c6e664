"""Known answers for every measure, suppression, noise and the ε ledger."""

from __future__ import annotations

import dataclasses
import json
import math

import pytest

from policies.aggregate import Partial, add_exact
from policies.base import END_OF_STREAM, PolicyError
from policies.compile import compile_spec
from policies.noise import EpsilonLedger, noisy_measures
from policies.oracle import evaluate_view
from policies.pseudonymise import KeyRing, Pseudonymiser
from policies.spec import MeasureSpec, NoiseSpec
from policies.suppress import GroupTotals, suppress, withhold
from policies.testing import run_stream
from policies.window import nearest_rank
from tests.policies.harness import T0, rich_spec, seeded_ring

pytestmark = pytest.mark.unit


def ring() -> KeyRing:
    return seeded_ring()


def event(
    who: str, t: int, v: object, url: str = "u1", kind: str = "a", x: float = 1.2
) -> dict[str, object]:
    return {"who": who, "t": T0 + t, "v": v, "url": url, "kind": kind, "x": x, "secret": "no"}


# One window [T0, T0+1000), one group (kind=a, x=1.0): 5 events, 4 subjects, 3 urls.
EVENTS = [
    event("alice", 10, 4, "u1"),
    event("bob", 20, 1.5, "u2"),
    event("carol", 30, None, "u1"),
    event("dave", 40, 10, "u3"),
    event("alice", 50, 2.5, "u2"),
    event("zed", 60, 99, "u9", kind="c"),  # filtered out by the view
]
EXPECTED = {
    "events": 5,
    "people": 4,
    "urls": 3,
    "total": 18.0,
    "avg": 4.5,
    "q": [2.5, 10.0],
}


@pytest.mark.parametrize("path", ["stream", "oracle"])
def test_every_measure_known_answer(path: str) -> None:
    spec = rich_spec(k=2)
    if path == "stream":
        releases = run_stream(compile_spec(spec, keyring=ring()), EVENTS, "who").releases
    else:
        releases = evaluate_view(spec, EVENTS, Pseudonymiser(ring(), spec.contract))
    [release] = releases
    assert (release.window.start, release.window.end) == (T0, T0 + 1000)
    [group] = release.groups
    assert dict(group.group) == {"kind": "a", "x": 1.0}
    assert dict(group.measures) == EXPECTED
    assert release.report.events_published == 5
    assert release.key_ids == (f"test-contract:{T0 // 2000}",)


def test_process_outcome_accounts_for_every_record() -> None:
    spec = rich_spec(k=2, lateness_ms=0)
    agg = compile_spec(spec, keyring=ring()).partition_state("p0")
    records = [
        event("a", 5000, 1),
        event("b", 10, 1),
        event("c", 5001, 1, kind="zz"),
        event("d", 5002, 1),
    ]
    out = agg.process(enumerate(records))
    assert (out.folded, out.late, out.filtered) == (2, 1, 1)
    replay = agg.process(enumerate(records))
    assert replay.skipped == 4 and replay.folded == 0


@pytest.mark.parametrize(
    ("values", "q", "expected"),
    [
        ([1, 2, 3, 4], 0.5, 2),
        ([1, 2, 3, 4], 0.75, 3),
        ([1, 2, 3, 4], 0.76, 4),
        (list(range(1, 11)), 0.7, 7),
        (list(range(1, 11)), 0.9, 9),
        ([5], 0.99, 5),
        ([1, 2], 0.0, 1),
        ([1, 2], 1.0, 2),
    ],
)
def test_nearest_rank_quantile(values: list[float], q: float, expected: float) -> None:
    assert nearest_rank([float(v) for v in values], q) == expected


def test_exact_sum_is_order_independent() -> None:
    values = [1e16, 1.0, -1e16, 0.1, 0.2, 1e-3, 3.3e10]
    a: list[float] = []
    b: list[float] = []
    for v in values:
        add_exact(a, v)
    for v in reversed(values):
        add_exact(b, v)
    assert math.fsum(a) == math.fsum(b) == math.fsum(values)


def test_suppression_report() -> None:
    groups = [
        GroupTotals({"g": 1}, 30, 12, {}),
        GroupTotals({"g": 2}, 4, 3, {}),
        GroupTotals({"g": 3}, 10, 10, {}),
    ]
    kept, report = suppress(groups, 10)
    assert [g.group["g"] for g in kept] == [1, 3]
    assert (report.groups_published, report.groups_suppressed) == (2, 1)
    assert (report.events_published, report.events_suppressed) == (40, 4)
    whole = withhold(groups, 10, "budget_exhausted")
    assert whole.events_suppressed == 44 and whole.groups_published == 0


def test_small_groups_are_withheld_in_releases() -> None:
    spec = rich_spec(k=5)
    [release] = evaluate_view(spec, EVENTS, Pseudonymiser(ring(), spec.contract))
    assert release.groups == ()
    assert release.report.groups_suppressed == 1 and release.report.events_suppressed == 5


@pytest.mark.parametrize("mechanism", ["geometric", "laplace"])
def test_noisy_measures_are_clamped_and_integral(mechanism: str) -> None:
    noise = NoiseSpec(mechanism, 0.01, 1.0, 86_400_000, value_bound=1.0)  # huge noise
    specs = (MeasureSpec("n", "count"), MeasureSpec("s", "sum", "v"))
    for window in range(50):
        out = noisy_measures({"n": 3, "s": 2.5}, specs, noise, b"k" * 32, "c", "v", window, {})
        assert isinstance(out["n"], int) and out["n"] >= 0
        assert isinstance(out["s"], float) and out["s"] >= 0


@pytest.mark.parametrize(("mechanism", "grid"), [("geometric", 1.0), ("laplace", 2.0 / 1024)])
def test_noisy_sums_are_released_on_the_grid(mechanism: str, grid: float) -> None:
    # A raw float sum plus integer noise would publish the sum's fractional part exactly.
    noise = NoiseSpec(mechanism, 0.5, 1.0, 86_400_000, value_bound=2.0)  # Δ of a sum: 2
    specs = (MeasureSpec("s", "sum", "v"),)
    for window in range(50):
        out = noisy_measures({"s": 1e6 + 0.123}, specs, noise, b"k" * 32, "c", "v", window, {})
        assert isinstance(out["s"], float) and (out["s"] / grid).is_integer()


def test_ledger_refuses_over_budget_and_is_idempotent() -> None:
    ledger = EpsilonLedger(0.1, 0.6, 1000, 2)  # two noised measures: 0.2 per window
    assert [ledger.charge(s) for s in (0, 100, 200, 300)] == [True, True, True, False]
    assert ledger.charge(100)  # re-release of a charged window costs nothing
    assert ledger.spent(0) == 0.6  # exact decimals: 3 × 0.1 × 2, not 0.6000000000000001
    assert ledger.charge(1000)  # a new period, a new budget
    restored = EpsilonLedger(0.1, 0.6, 1000, 2)
    restored.load(ledger.to_dict())
    assert not restored.charge(300) and restored.charge(0)


def test_view_with_noise_needs_a_key_and_no_unnoisable_measure() -> None:
    noise = NoiseSpec("geometric", 1.0, 10.0, 86_400_000)
    with pytest.raises(PolicyError):
        compile_spec(rich_spec(noise=noise), keyring=ring()).merger(["p0"])
    with pytest.raises(PolicyError):
        dataclasses.replace(rich_spec(), noise=noise)  # mean and quantiles cannot be noised


def test_budget_exhausted_window_is_withheld_and_reported() -> None:
    # Four noised measures and the release decision at ε = 0.5 cost 2.5 a window: 3.0 pays for
    # one window per period.
    noise = NoiseSpec("geometric", 0.5, 3.0, 10_000, value_bound=100.0)
    spec = rich_spec(noise=noise)
    events = EVENTS + [event(w, 1500, 1) for w in ("p", "q", "r")]
    view = compile_spec(spec, keyring=ring(), noise_key=b"k" * 32)
    first, second = run_stream(view, events, "who").releases
    assert first.epsilon == 2.5 and first.report.withheld_reason is None
    assert second.groups == () and second.report.withheld_reason == "budget_exhausted"
    assert second.epsilon == 0.0 and second.report.events_suppressed == 3
    oracle = evaluate_view(spec, events, Pseudonymiser(ring(), spec.contract), b"k" * 32)
    assert oracle == [first, second]


def test_release_twice_gives_identical_noise() -> None:
    noise = NoiseSpec("geometric", 0.5, 100.0, 86_400_000, value_bound=100.0)
    spec = rich_spec(noise=noise)
    view = compile_spec(spec, keyring=ring(), noise_key=b"k" * 32)
    merger = view.merger(["p0"])
    agg = view.partition_state("p0")
    agg.process(enumerate(EVENTS))
    partials = agg.drain_partials()
    merger.merge(partials)
    state = merger.snapshot()
    merger.observe_watermark("p0", END_OF_STREAM)
    [first] = merger.release_ready()
    crashed = view.merger(["p0"])  # a restarted worker re-releases from the same state
    crashed.restore(state)
    crashed.merge(partials)
    crashed.observe_watermark("p0", END_OF_STREAM)
    [again] = crashed.release_ready()
    assert first == again and first.to_dict() == again.to_dict()


def test_a_subject_counts_once_in_a_window_that_straddles_a_key_rotation() -> None:
    spec = dataclasses.replace(rich_spec(k=2), rotation_ms=500)  # two epochs per window
    events = [event("alice", 100, 1), event("alice", 700, 1), event("bob", 800, 1)]
    for releases in (
        run_stream(compile_spec(spec, keyring=ring()), events, "who").releases,
        evaluate_view(spec, events, Pseudonymiser(ring(), spec.contract)),
    ):
        [release] = releases
        assert release.groups[0].measures["people"] == 2
        assert release.key_ids == (f"test-contract:{T0 // 500}",)


def test_aggregator_snapshot_restore_and_replay_do_not_double_count() -> None:
    spec = rich_spec(k=2)
    view = compile_spec(spec, keyring=ring())
    records = list(enumerate(EVENTS))
    straight = view.partition_state("p0")
    straight.process(records)
    crashed = view.partition_state("p0")
    crashed.process(records[:3])
    state = json.loads(json.dumps(crashed.snapshot()))  # through JSON, like a state topic
    restarted = view.partition_state("p0")
    restarted.restore(state)
    outcome = restarted.process(records)  # the runtime replays from an older offset
    assert outcome.skipped == 3
    assert [p.to_dict() for p in restarted.drain_partials()] == [
        p.to_dict() for p in straight.drain_partials()
    ]
    assert restarted.watermark == straight.watermark


def test_partials_round_trip_through_json() -> None:
    agg = compile_spec(rich_spec(k=2), keyring=ring()).partition_state("p3")
    agg.process(enumerate(EVENTS))
    for part in agg.drain_partials():
        data = json.loads(json.dumps(part.to_dict()))
        assert Partial.from_dict(data) == part
        assert "alice" not in json.dumps(data) and "u1" not in json.dumps(data)
