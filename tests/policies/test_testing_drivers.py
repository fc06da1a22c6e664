"""The documented use of ``policies.testing``: an example contract run without Kafka."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from contracts import Contract, examples_dir, load_contracts
from policies.compile import compile_contract
from policies.generalise import h3_cell
from policies.oracle import evaluate
from policies.pseudonymise import KeyRing
from policies.testing import (
    TestingClock,
    TestingSource,
    arrival_order,
    oracle_releases,
    partition_of,
    run_contract,
    run_stream,
)

pytestmark = pytest.mark.unit

NOW = datetime(2026, 6, 1, tzinfo=UTC)
T = int(datetime(2026, 3, 2, 8, 0, tzinfo=UTC).timestamp() * 1000)  # a window start
MINUTE = 60_000
BELLECOUR = (45.7640, 4.8357)
VAISE = (45.7750, 4.8050)


@pytest.fixture(scope="module")
def contract() -> Contract:
    [lyon] = load_contracts([examples_dir() / "micromobility.yaml"], now=NOW)
    return lyon


def vehicle_event(
    vehicle: str, minute: int, place: tuple[float, float], event_type: str = "available"
) -> dict[str, Any]:
    lat, lon = place
    return {
        "event_id": f"{vehicle}-{minute}",
        "vehicle_id": vehicle,
        "provider_id": "p",
        "vehicle_type": "scooter_standing",
        "propulsion": "electric",
        "event_type": event_type,
        "timestamp": T + minute * MINUTE,
        "lat": lat,
        "lon": lon,
        "battery_pct": 80,
        "trip_id": None,
    }


def handful() -> list[dict[str, Any]]:
    """12 vehicles at Bellecour (k = 10: published), 3 at Vaise (suppressed), 2 filtered (the
    two places lie in different H3 cells at the example's resolution 7)."""
    records = [vehicle_event(f"scooter-{i:02d}", i, BELLECOUR) for i in range(12)]
    records.append(vehicle_event("scooter-00", 13, BELLECOUR))  # the same vehicle again
    records += [vehicle_event(f"scooter-v{i}", 2 + i, VAISE) for i in range(3)]
    records += [vehicle_event(f"scooter-{i:02d}", 5, BELLECOUR, "trip_start") for i in (1, 2)]
    return records


def test_an_example_view_streamed_equals_the_oracle(contract: Contract) -> None:
    view = compile_contract(contract, keyring=KeyRing())["availability"]
    records = handful()
    arrived = arrival_order(records, "timestamp", lateness_ms=5 * MINUTE, seed=1)
    run = run_stream(
        view, arrived, "vehicle_id", partitions=4, batch=3, redeliver_seed=1, closed_only=True
    )
    assert run.outcome.late == 0 and run.outcome.filtered == 2
    assert run.releases == oracle_releases(view, records)
    [release] = run.releases
    assert [(dict(g.group), dict(g.measures)) for g in release.groups] == [
        ({"cell": h3_cell(*BELLECOUR, 7)}, {"events": 13, "vehicles": 12})
    ]
    assert (release.report.groups_suppressed, release.report.events_suppressed) == (1, 3)


def test_a_whole_contract_streamed_equals_the_oracle(contract: Contract) -> None:
    events = {"vehicle_events": handful(), "trips": []}
    ring = KeyRing()  # one ring for both sides: the same keys, whatever their creation order
    runs = run_contract(contract, events, keyring=ring, partitions=3, batch=2)
    expected = evaluate(contract, events, keyring=ring)
    assert {name: run.releases for name, run in runs.items()} == expected
    assert sum(len(r.groups) for run in runs.values() for r in run.releases) == 1


def test_an_idle_partition_holds_windows_open_until_the_clock_moves(contract: Contract) -> None:
    view = compile_contract(contract, keyring=KeyRing())["availability"]
    vehicles = [v for v in (f"scooter-{i:02d}" for i in range(40)) if partition_of(v, 2) == 0]
    records = [vehicle_event(v, i, BELLECOUR) for i, v in enumerate(vehicles[:12])]
    records.append(vehicle_event(vehicles[0], 21, BELLECOUR))  # p0's watermark passes 8:15
    assert TestingSource.of(records, "vehicle_id", 2).partitions[1] == ()
    without = run_stream(view, records, "vehicle_id", partitions=2, batch=1, finish=False)
    assert without.releases == []  # p1 has seen nothing: NO_WATERMARK holds every window
    clock = TestingClock(now_ms=T, step_ms=2 * MINUTE)
    run = run_stream(view, records, "vehicle_id", partitions=2, batch=1, finish=False, clock=clock)
    assert clock() == T + len(records) * 2 * MINUTE
    first, _ = oracle_releases(view, records)
    assert run.releases == [first]  # 8:00-8:15 closed on both sources; 8:15-8:30 still open
