"""Conformance: fixtures and simulator output against the published MDS 2.0 and GBFS rules.

No registry package ships the MDS 2.0 or GBFS JSON schemas for Python that we could trust,
so the required fields and enumerations are written down here, each with the spec version
and section it comes from, and every fixture and every simulator document is checked against
them. The mapping tables are checked to cover every enumerated value.

Sources: MDS 2.0.2 (Open Mobility Foundation, ``data-types.md``, ``modes/vehicle_states.md``,
``modes/micromobility.md``, ``provider/README.md``); GBFS 3.0 and 2.3 (MobilityData,
``gbfs.md`` and the gbfs-json-schema files ``v3.0/*.json``, ``v2.3/*.json``).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import pytest

from connectors import gbfs, mds
from connectors.simulate import SimOptions
from connectors.simulate.gbfs import GbfsFeedSimulator
from connectors.simulate.mds import MdsFleet
from tests.ingest.conftest import data_file

# MDS 2.0.2 modes/vehicle_states.md
VEHICLE_STATES = {
    "removed", "available", "non_operational", "reserved", "on_trip", "stopped",
    "non_contactable", "missing", "elsewhere",
}  # fmt: skip
# MDS 2.0.2 modes/micromobility.md, "Event Types" (valid micromobility event types)
MICROMOBILITY_EVENT_TYPES = {
    "agency_drop_off", "agency_pick_up", "battery_charged", "battery_low", "changed_geographies",
    "comms_lost", "comms_restored", "compliance_pick_up", "decommissioned", "located",
    "maintenance", "maintenance_pick_up", "not_located",
    "off_hours", "on_hours", "provider_drop_off", "rebalance_pick_up", "reservation_cancel",
    "reservation_start", "system_resume", "system_suspend", "trip_cancel", "trip_end",
    "trip_enter_jurisdiction", "trip_leave_jurisdiction", "trip_start", "unspecified",
}  # fmt: skip
# MDS 2.0.2 data-types.md, "Events": trip_ids required if event_types contains one of these
TRIP_EVENT_TYPES = {
    "trip_start", "trip_end", "trip_cancel", "trip_enter_jurisdiction", "trip_leave_jurisdiction",
}  # fmt: skip
# MDS 2.0.2 data-types.md, "Vehicle Types" and "Propulsion Types"
MDS_VEHICLE_TYPES = {
    "bicycle", "bus", "cargo_bicycle", "car", "delivery_robot", "moped", "motorcycle",
    "scooter_standing", "scooter_seated", "truck", "other",
}  # fmt: skip
MDS_PROPULSION = {
    "human", "electric_assist", "electric", "combustion", "combustion_diesel", "hybrid",
    "hydrogen_fuel_cell", "plug_in_hybrid",
}  # fmt: skip
# MDS 2.0.2 data-types.md: the Required fields of Event, Trip and Vehicle
EVENT_REQUIRED = ("device_id", "provider_id", "event_id", "vehicle_state", "event_types",
                  "timestamp", "location")  # fmt: skip
TRIP_REQUIRED = ("provider_id", "device_id", "trip_id", "start_time", "end_time",
                 "start_location", "end_location", "duration", "distance")  # fmt: skip
VEHICLE_REQUIRED = ("device_id", "provider_id", "vehicle_id", "vehicle_type", "propulsion_types")
# MDS 2.0.2 modes/micromobility.md, "Trip Type"
TRIP_TYPES = {"rider", "rebalance", "maintenance"}
# GBFS 3.0 vehicle_types.json / 2.3 (2.3 also allows the older "scooter")
FORM_FACTORS = {"bicycle", "cargo_bicycle", "car", "moped", "scooter_standing", "scooter_seated",
                "other"}  # fmt: skip
GBFS_PROPULSION = MDS_PROPULSION
GBFS_FEED_NAMES_3_0 = {
    "gbfs", "gbfs_versions", "system_information", "vehicle_types", "station_information",
    "station_status", "vehicle_status", "system_alerts", "system_regions",
    "system_pricing_plans", "geofencing_zones",
}  # fmt: skip
# GBFS 3.0 system_information.json / 2.3: data's required fields
SYSTEM_INFORMATION_REQUIRED = {
    "3.0": ("system_id", "languages", "name", "opening_hours", "feed_contact_email", "timezone"),
    "2.3": ("system_id", "language", "name", "timezone"),
}


def _int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _gps(value: Any) -> bool:
    """MDS 2.0.2 data-types.md, "GPS Data": lat and lng required, doubles."""
    return isinstance(value, Mapping) and all(
        isinstance(value.get(k), int | float) for k in ("lat", "lng")
    )


def mds_event_problems(event: Mapping[str, Any]) -> list[str]:
    problems = [f"missing {f}" for f in EVENT_REQUIRED if f not in event]
    if event.get("vehicle_state") not in VEHICLE_STATES:
        problems.append("vehicle_state not in the enumeration")
    types = event.get("event_types")
    if not isinstance(types, list) or not types or not set(types) <= MICROMOBILITY_EVENT_TYPES:
        problems.append("event_types not a non-empty list of micromobility event types")
    elif set(types) & TRIP_EVENT_TYPES and not event.get("trip_ids"):
        problems.append("trip_ids required for trip event types")
    if not _int(event.get("timestamp")):
        problems.append("timestamp not integer ms")
    if not _gps(event.get("location")):
        problems.append("location not GPS")
    battery = event.get("battery_percent")
    if battery is not None and not (_int(battery) and 0 <= battery <= 100):
        problems.append("battery_percent not an integer 0..100")
    return problems


def mds_trip_problems(trip: Mapping[str, Any]) -> list[str]:
    problems = [f"missing {f}" for f in TRIP_REQUIRED if f not in trip]
    problems += [f"{f} not integer" for f in ("start_time", "end_time", "duration", "distance")
                 if not _int(trip.get(f))]  # fmt: skip
    problems += [
        f"{f} not GPS" for f in ("start_location", "end_location") if not _gps(trip.get(f))
    ]
    if "trip_type" in trip and trip["trip_type"] not in TRIP_TYPES:
        problems.append("trip_type not a micromobility trip type")
    return problems


def mds_vehicle_problems(vehicle: Mapping[str, Any]) -> list[str]:
    problems = [f"missing {f}" for f in VEHICLE_REQUIRED if f not in vehicle]
    if vehicle.get("vehicle_type") not in MDS_VEHICLE_TYPES:
        problems.append("vehicle_type not in the enumeration")
    types = vehicle.get("propulsion_types")
    if not isinstance(types, list) or not types or not set(types) <= MDS_PROPULSION:
        problems.append("propulsion_types not a non-empty list of propulsion types")
    return problems


def mds_page_problems(doc: Mapping[str, Any], key: str, paginated: bool) -> list[str]:
    """MDS 2.0.2 provider/README.md, "Responses" and "Pagination"."""
    problems = [] if isinstance(doc.get("version"), str) else ["no version"]
    if not isinstance(doc.get(key), list):
        problems.append(f"no {key} list")
    links = doc.get("links")
    if paginated and links is not None and "next" not in links:
        problems.append("links without next")
    if not paginated and links is not None:
        problems.append(f"{key} must not be paginated")
    return problems


def gbfs_problems(doc: Mapping[str, Any], version: str, feed: str) -> list[str]:
    """GBFS ``version``: the common header, then the feed's own required fields."""
    problems = [f"missing {f}" for f in ("last_updated", "ttl", "version", "data") if f not in doc]
    if doc.get("version") != version:
        problems.append("version")
    time_ok = (
        gbfs.rfc3339_ms(doc.get("last_updated", "")) is not None
        if version == "3.0"
        else _int(doc.get("last_updated"))
    )
    if not time_ok or not _int(doc.get("ttl")) or doc["ttl"] < 0:
        problems.append("last_updated or ttl of the wrong type for the version")
    data = doc.get("data", {})
    if feed in ("vehicle_status", "free_bike_status"):
        for vehicle in data.get("vehicles" if version == "3.0" else "bikes", []):
            ident = "vehicle_id" if version == "3.0" else "bike_id"
            problems += [f"vehicle without {f}" for f in (ident, "is_reserved", "is_disabled")
                         if f not in vehicle]  # fmt: skip
            if not ({"lat", "lon"} <= set(vehicle) or "station_id" in vehicle):
                problems.append("vehicle with neither lat/lon nor station_id")
    elif feed == "vehicle_types":
        for kind in data.get("vehicle_types", []):
            form_factors = FORM_FACTORS | ({"scooter"} if version == "2.3" else set())
            if kind.get("form_factor") not in form_factors:
                problems.append("form_factor")
            if kind.get("propulsion_type") not in GBFS_PROPULSION:
                problems.append("propulsion_type")
            if version == "3.0" and kind.get("propulsion_type") != "human":
                if "max_range_meters" not in kind:  # required for motorised types in 3.0
                    problems.append("max_range_meters")
    elif feed == "gbfs":
        feeds = (
            data.get("feeds") if version == "3.0" else next(iter(data.values()), {}).get("feeds")
        )
        for entry in feeds or [None]:
            if not isinstance(entry, Mapping) or not {"name", "url"} <= set(entry):
                problems.append("feed without name and url")
            elif version == "3.0" and entry["name"] not in GBFS_FEED_NAMES_3_0:
                problems.append("feed name not in the enumeration")
    elif feed == "system_information":
        problems += [f"missing {f}" for f in SYSTEM_INFORMATION_REQUIRED[version] if f not in data]
    return problems


def test_mds_fixtures_follow_2_0() -> None:
    events = json.loads(data_file("mds_2_0_events.json"))
    trips = json.loads(data_file("mds_2_0_trips.json"))
    assert mds_page_problems(events, "events", paginated=True) == []
    assert mds_page_problems(trips, "trips", paginated=False) == []
    assert [p for e in events["events"] for p in mds_event_problems(e)] == []
    assert [p for t in trips["trips"] for p in mds_trip_problems(t)] == []


def test_the_mds_simulator_publishes_2_0_objects() -> None:
    fleet = MdsFleet(SimOptions(seed=5, size=80))
    end = fleet.options.start_ms + 3 * 3_600_000
    fleet.advance(end)
    events = fleet.events_between(fleet.options.start_ms, end)
    trips = fleet.trips_ending_between(fleet.options.start_ms, end)
    assert len(events) > 100 and len(trips) > 20 and len(fleet.vehicles) == 80
    assert [p for e in events for p in mds_event_problems(e)] == []
    assert [p for t in trips for p in mds_trip_problems(t)] == []
    assert [p for v in fleet.vehicles.values() for p in mds_vehicle_problems(v)] == []
    # Every simulated event maps to a record the contract's validator accepts the shape of.
    states = {e["vehicle_state"] for e in events}
    assert {"available", "on_trip", "reserved"} <= states


@pytest.mark.parametrize(
    ("name", "version", "feed"),
    [
        ("gbfs_v3_gbfs.json", "3.0", "gbfs"),
        ("gbfs_v3_vehicle_status.json", "3.0", "vehicle_status"),
        ("gbfs_v3_vehicle_types.json", "3.0", "vehicle_types"),
        ("gbfs_v2_3_free_bike_status.json", "2.3", "free_bike_status"),
    ],
)
def test_gbfs_fixtures_follow_their_version(name: str, version: str, feed: str) -> None:
    assert gbfs_problems(json.loads(data_file(name)), version, feed) == []


@pytest.mark.parametrize("version", ["3.0", "2.3"])
def test_the_gbfs_simulator_publishes_valid_documents(version: str) -> None:
    feed = GbfsFeedSimulator(SimOptions(seed=2, size=40))
    feed.poll()
    vehicles = feed.vehicle_status() if version == "3.0" else feed.free_bike_status()
    documents = {
        "gbfs": feed.discovery("https://gbfs.example/lyon", version),
        "system_information": feed.system_information(version),
        "vehicle_types": feed.vehicle_types(version),
        "vehicle_status" if version == "3.0" else "free_bike_status": vehicles,
    }
    for name, doc in documents.items():
        assert gbfs_problems(doc, version, name) == [], name
    assert gbfs.feeds_of(gbfs.discover_feeds(documents["gbfs"])).types is not None


def test_the_mappings_cover_every_enumerated_value() -> None:
    assert set(mds.STATE_EVENT) == VEHICLE_STATES
    assert set(mds.PROPULSION) == MDS_PROPULSION
    assert set(gbfs.PROPULSION) == GBFS_PROPULSION
    assert FORM_FACTORS | {"scooter"} == set(gbfs.FORM_FACTORS)
