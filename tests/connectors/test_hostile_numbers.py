"""One hostile number in a feed is one bad item, never a stalled feed.

Before: ``math.isfinite(10**400)`` raised OverflowError in ``gbfs._number``, ``ttl: 1e306``
overflowed ``ttl_ms``, ``9999-12-31T23:59:59-23:59`` (past year 9999 in UTC) raised
OverflowError out of ``rfc3339_ms`` so one vehicle's ``last_reported`` failed the whole
snapshot, and ``mds.trip_record`` raised on a 400-digit ``distance``. Each escaped as an
exception out of the parser and stopped the poll.
"""

from __future__ import annotations

from typing import Any

import pytest

from broker.kafka.reasons import Reason
from connectors import gbfs, mds
from connectors.base import Rejected
from connectors.validate import Router
from contracts import Contract
from tests.connectors.conftest import LYON, NOW_MS

HUGE_INT = 10**400
PAST_9999 = "9999-12-31T23:59:59-23:59"


@pytest.mark.parametrize(
    "value",
    [HUGE_INT, -HUGE_INT, 1e306, -1e306, PAST_9999, "0001-01-01T00:00:00+23:59"],
    ids=["10**400", "-10**400", "1e306", "-1e306", "past 9999", "before year 1"],
)
def test_a_time_out_of_range_is_not_a_time(value: Any) -> None:
    assert gbfs.gbfs_time_ms(value) is None


@pytest.mark.parametrize(
    ("ttl", "expected_ms"),
    [(1e306, gbfs.MAX_TTL_S * 1000), (HUGE_INT, 0), (float("inf"), 0), (60, 60_000)],
    ids=["1e306", "10**400", "inf", "60"],
)
def test_a_ttl_is_capped_at_a_day(ttl: Any, expected_ms: int) -> None:
    assert gbfs.ttl_ms({"ttl": ttl}) == expected_ms


def vehicle(vehicle_id: str, **overrides: Any) -> dict[str, Any]:
    entry: dict[str, Any] = {
        "vehicle_id": vehicle_id,
        "lat": LYON[0],
        "lon": LYON[1],
        "is_reserved": False,
        "is_disabled": False,
        "last_reported": "2026-06-01T11:59:00Z",
        "current_fuel_percent": 0.5,
    }
    entry.update(overrides)
    return entry


def test_one_hostile_vehicle_does_not_fail_the_snapshot() -> None:
    doc = {
        "last_updated": "2026-06-01T12:00:00Z",
        "ttl": 1e306,
        "version": "3.0",
        "data": {
            "vehicles": [
                vehicle("good"),
                vehicle("far-reported", last_reported=PAST_9999),
                vehicle("huge-lat", lat=HUGE_INT),
                vehicle("huge-fuel", current_fuel_percent=HUGE_INT),
                vehicle("huge-time", last_reported=HUGE_INT),
            ]
        },
    }
    snapshot = gbfs.parse_vehicle_feed(doc)
    listed = {v.vehicle_id: v for v in snapshot.vehicles}
    assert set(listed) == {"good", "far-reported", "huge-fuel", "huge-time"}
    assert snapshot.skipped == 1  # the vehicle without a usable position
    assert listed["far-reported"].last_reported_ms is None
    assert listed["huge-time"].last_reported_ms is None
    assert listed["huge-fuel"].fuel_percent is None
    assert snapshot.ttl_s == gbfs.MAX_TTL_S


def test_a_hostile_station_count_is_not_a_count() -> None:
    doc = {
        "last_updated": 1_780_315_200,
        "ttl": 0,
        "data": {"stations": [{"station_id": "s", "num_bikes_available": HUGE_INT}]},
    }
    _, [station] = gbfs.parse_station_status(doc)
    assert station.vehicles_available == 0


def test_a_400_digit_trip_distance_is_one_rejection_at_its_field(mobility: Contract) -> None:
    trip = {
        "trip_id": "5f0b4a8e-1b7c-4c2d-9e3f-6a7b8c9d0001",
        "device_id": "2b6c6a0e-0d4f-4f2a-9a6b-5c1f0e3d0001",
        "start_time": NOW_MS - 20 * 60_000,
        "end_time": NOW_MS - 60_000,
        "start_location": {"lat": LYON[0], "lng": LYON[1]},
        "end_location": {"lat": LYON[0] + 0.01, "lng": LYON[1]},
        "distance": HUGE_INT,
        "duration": 1140,
    }
    record = mds.trip_record(trip, mds.VehicleInfo("scooter_standing", "electric"))
    outcome = Router([mobility]).validate_json(
        mobility.id, "trips", record, now_ms=NOW_MS, connector="mds", source="t"
    )
    assert outcome == Rejected(Reason.OUT_OF_RANGE, "distance_m", outcome.stage)
    ok = mds.trip_record({**trip, "distance": 1234}, None)
    assert ok["distance_m"] == 1234.0
