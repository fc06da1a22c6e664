"""MDS 2.0 objects (Event, Trip, Vehicle) to the contract's ``vehicle_events`` and ``trips``.

The one mapping from MDS 2.0 to our stream records, shared by the Provider pull connector
(``connectors.pollers.MdsPoller``) and anything that receives Agency 2.0 payloads: Provider
and Agency use the same Event, Trip and Vehicle objects in 2.0 (MDS 2.0.2 ``data-types.md``).
The table of fields is in docs/operators.md ("MDS 2.0 mapping").

Mapping is lenient on purpose: a field the provider left out stays out and a value of the
wrong type is passed on as is, so the validator rejects the record with the precise reason
and *our* field path (``MISSING_FIELD at timestamp``) instead of this module guessing.

State semantics (MDS 2.0 ``modes/micromobility.md``, state machine): an event's
``vehicle_state`` is the state the vehicle is in after the event, whatever its
``event_types`` say; so an event ``{vehicle_state: available, event_types: [trip_end]}`` is
an ``available`` record and reaches the availability view. ``event_types`` only carries the
reason. Events and trips carry no vehicle type or propulsion in 2.0: they come from
``/vehicles`` (``Vehicle.vehicle_type`` and ``propulsion_types``) through ``VehicleInfo``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from connectors.base import ConnectorError

MEDIA_TYPE = "application/vnd.mds+json"
VERSION = "2.0"
# vehicle_state (MDS 2.0 modes/vehicle_states.md) -> our event_type: the state after the event.
STATE_EVENT = {
    "available": "available",
    "reserved": "reserved",
    "on_trip": "on_trip",
    "stopped": "on_trip",  # in a trip, stopped for a while
    "non_operational": "unavailable",  # in the right of way, not rentable
    "non_contactable": "unavailable",
    "removed": "removed",  # not in the right of way
    "missing": "removed",
    "elsewhere": "removed",
}
# Propulsion types (MDS 2.0 data-types.md) to the ones our schema names.
PROPULSION = {
    "human": "human",
    "electric_assist": "electric_assist",
    "electric": "electric",
    "combustion": "combustion",
    "combustion_diesel": "combustion",
    "hybrid": "electric",
    "plug_in_hybrid": "electric",
    "hydrogen_fuel_cell": "electric",
}
# When a vehicle lists several, the motorised one names it ("human" + "electric" = electric).
_PROPULSION_RANK = ("electric", "electric_assist", "combustion", "human")
# Vehicle types (MDS 2.0 data-types.md, "Vehicle Types").
VEHICLE_TYPES = frozenset({
    "bicycle", "bus", "cargo_bicycle", "car", "delivery_robot", "moped", "motorcycle",
    "scooter_standing", "scooter_seated", "truck", "other",
})  # fmt: skip
# Where each field of our records comes from in the MDS object: the mapping below, read
# backwards, so a rejection names the field the provider sent (``timestamp``, ``location.lng``).
EVENT_SOURCES = {
    "event_id": "event_id",
    "vehicle_id": "device_id",
    "provider_id": "provider_id",
    "vehicle_type": "vehicle_type",  # of the registered Vehicle
    "propulsion": "propulsion_types",  # of the registered Vehicle
    "event_type": "vehicle_state",
    "timestamp": "timestamp",
    "lat": "location.lat",
    "lon": "location.lng",
    "battery_pct": "battery_percent",
    "trip_id": "trip_ids",
}
TRIP_SOURCES = {
    "event_id": "trip_id",
    "trip_id": "trip_id",
    "vehicle_id": "device_id",
    "vehicle_type": "vehicle_type",  # of the registered Vehicle
    "start_time": "start_time",
    "end_time": "end_time",
    "start_lat": "start_location.lat",
    "start_lon": "start_location.lng",
    "end_lat": "end_location.lat",
    "end_lon": "end_location.lng",
    "distance_m": "distance",
    "duration_s": "duration",
}


@dataclass(frozen=True)
class Page:
    """The items of one page and the URL of the next one (``links.next``), if any."""

    items: tuple[Mapping[str, Any], ...]
    next_url: str | None


@dataclass(frozen=True)
class VehicleInfo:
    """What ``/vehicles`` says of a device: our ``vehicle_type`` and ``propulsion``."""

    vehicle_type: Any
    propulsion: Any


def page(doc: Any, key: str) -> Page:
    """A page ``{"version": ..., key: [...], "links": {"next": url | null}}``."""
    if not isinstance(doc, Mapping):
        msg = "MDS page: not a JSON object"
        raise ConnectorError(msg)
    items = doc.get(key)
    if not isinstance(items, list):
        msg = f"MDS page: no {key} list"
        raise ConnectorError(msg)
    links = doc.get("links")
    next_url = links.get("next") if isinstance(links, Mapping) else None
    return Page(
        tuple(i for i in items if isinstance(i, Mapping)),
        next_url if isinstance(next_url, str) and next_url else None,
    )


def vehicle_info(vehicle: Mapping[str, Any]) -> VehicleInfo:
    """A ``Vehicle``'s type and propulsion (several propulsion types: the motorised one)."""
    types = vehicle.get("propulsion_types")
    propulsion: Any = types
    if isinstance(types, list) and types and all(isinstance(t, str) for t in types):
        mapped = sorted(PROPULSION[t] if t in PROPULSION else str(t) for t in types)
        propulsion = next((p for p in _PROPULSION_RANK if p in mapped), mapped[0])
    return VehicleInfo(vehicle.get("vehicle_type"), propulsion)


def event_record(item: Mapping[str, Any], vehicle: VehicleInfo | None) -> dict[str, Any]:
    """An MDS 2.0 ``Event`` as a ``vehicle_events`` record (``vehicle`` from ``/vehicles``)."""
    record: dict[str, Any] = {}
    _put(record, "event_id", item.get("event_id"))
    _put(record, "vehicle_id", item.get("device_id"))
    _put(record, "provider_id", item.get("provider_id"))
    if vehicle is not None:
        _put(record, "vehicle_type", vehicle.vehicle_type)
        _put(record, "propulsion", vehicle.propulsion)
    state = item.get("vehicle_state")
    _put(record, "event_type", STATE_EVENT.get(state, state) if isinstance(state, str) else state)
    _put(record, "timestamp", item.get("timestamp"))
    location = item.get("location")
    if isinstance(location, Mapping):
        _put(record, "lat", location.get("lat"))
        _put(record, "lon", location.get("lng"))
    record["battery_pct"] = item.get("battery_percent")
    trips = item.get("trip_ids")
    record["trip_id"] = trips[0] if isinstance(trips, list) and trips else None
    return record


def trip_record(item: Mapping[str, Any], vehicle: VehicleInfo | None) -> dict[str, Any]:
    """An MDS 2.0 ``Trip`` as a ``trips`` record; its ``trip_id`` is the record's event id."""
    record: dict[str, Any] = {}
    _put(record, "event_id", item.get("trip_id"))
    _put(record, "trip_id", item.get("trip_id"))
    _put(record, "vehicle_id", item.get("device_id"))
    if vehicle is not None:
        _put(record, "vehicle_type", vehicle.vehicle_type)
    _put(record, "start_time", item.get("start_time"))
    _put(record, "end_time", item.get("end_time"))
    for prefix in ("start", "end"):
        location = item.get(f"{prefix}_location")
        if isinstance(location, Mapping):
            _put(record, f"{prefix}_lat", location.get("lat"))
            _put(record, f"{prefix}_lon", location.get("lng"))
    _put(record, "distance_m", _as_double(item.get("distance")))
    _put(record, "duration_s", item.get("duration"))
    return record


def source_fields(field_path: str, sources: Mapping[str, str]) -> list[str]:
    """The MDS fields behind a rejection's field path (``lat,lon`` -> both location fields)."""
    return [sources.get(name, name) for name in field_path.split(",") if name]


def hour_param(start_ms: int) -> str:
    """``YYYY-MM-DDTHH`` (UTC) of the hour starting at ``start_ms`` (``/trips?end_time=``)."""
    return datetime.fromtimestamp(start_ms / 1000, tz=UTC).strftime("%Y-%m-%dT%H")


def _put(record: dict[str, Any], name: str, value: Any) -> None:
    if value is not None:
        record[name] = value


def _as_double(value: Any) -> Any:
    """A JSON number as a float; anything else, or an int too big for a float (10**400), as
    it is, so the validator names the field (WRONG_TYPE or OUT_OF_RANGE at distance_m)."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        try:
            return float(value)
        except OverflowError:
            return value
    return value
