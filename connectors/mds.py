"""MDS Provider API pages (2.0 ``events``/``trips``, 1.x ``status_changes``/``trips``) to records.

Pure mapping from the provider's JSON to our flattened ``vehicle_events`` and ``trips``
records. Mapping is lenient on purpose: a field the provider left out stays out and a value
of the wrong type is passed on as is, so the validator rejects the record with the precise
reason and *our* field path (``MISSING_FIELD at timestamp``) instead of this module guessing.

Event types: MDS 2.0 gives ``vehicle_state`` + ``event_types[]``, 1.x ``event_type`` +
``event_type_reason``; both become one of ``available``, ``reserved``, ``trip_start``,
``trip_end``, ``maintenance_pick_up`` or ``unavailable``.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TypeGuard

from connectors.base import ConnectorError

_DERIVED = uuid.UUID("0b0f3d7e-2f4e-4a7c-9d53-3b8e1e5a6c21")
STATE_EVENT = {
    "available": "available",
    "reserved": "reserved",
    "on_trip": "trip_start",
    "non_operational": "unavailable",
    "removed": "unavailable",
    "elsewhere": "unavailable",
    "stopped": "unavailable",
    "unknown": "unavailable",
}
TYPE_EVENT = {
    "trip_start": "trip_start",
    "trip_end": "trip_end",
    "reservation_start": "reserved",
    "maintenance_pick_up": "maintenance_pick_up",
}
REASON_EVENT = {
    "user_pick_up": "trip_start",
    "user_drop_off": "trip_end",
    "maintenance_pick_up": "maintenance_pick_up",
}
LEGACY_TYPE_EVENT = {
    "available": "available",
    "reserved": "reserved",
    "unavailable": "unavailable",
    "removed": "unavailable",
}


@dataclass(frozen=True)
class Page:
    """The items of one page and the URL of the next one (``links.next``), if any."""

    items: tuple[Mapping[str, Any], ...]
    next_url: str | None


@dataclass(frozen=True)
class VehicleDefaults:
    """What to say when the provider's records lack vehicle type or propulsion (2.0 events)."""

    vehicle_type: str = "scooter_standing"
    propulsion: str = "electric"


def page(doc: Any, key: str, legacy_key: str) -> Page:
    """A page of MDS 2.0 (``{key: [...]}``) or 1.x (``{"data": {legacy_key: [...]}}``)."""
    if not isinstance(doc, Mapping):
        msg = "MDS page: not a JSON object"
        raise ConnectorError(msg)
    items = doc.get(key)
    if items is None and isinstance(doc.get("data"), Mapping):
        items = doc["data"].get(legacy_key, doc["data"].get(key))
    if not isinstance(items, list):
        msg = f"MDS page: no {key} list"
        raise ConnectorError(msg)
    links = doc.get("links")
    next_url = links.get("next") if isinstance(links, Mapping) else None
    return Page(
        tuple(i for i in items if isinstance(i, Mapping)),
        next_url if isinstance(next_url, str) and next_url else None,
    )


def event_record(item: Mapping[str, Any], defaults: VehicleDefaults) -> dict[str, Any]:
    """An MDS event (2.0) or status change (1.x) as a ``vehicle_events`` record."""
    record: dict[str, Any] = {}
    _put(record, "vehicle_id", item.get("device_id"))
    _put(record, "provider_id", item.get("provider_id"))
    record["vehicle_type"] = item.get("vehicle_type", defaults.vehicle_type)
    propulsion = item.get("propulsion_types")
    record["propulsion"] = (
        propulsion[0] if isinstance(propulsion, list) and propulsion else defaults.propulsion
    )
    _put(record, "event_type", _event_type(item))
    _put(record, "timestamp", item.get("timestamp", item.get("event_time")))
    lat, lon = _event_point(item)
    _put(record, "lat", lat)
    _put(record, "lon", lon)
    record["battery_pct"] = _battery(item)
    trips = item.get("trip_ids")
    record["trip_id"] = (
        trips[0] if isinstance(trips, list) and trips else item.get("associated_trip")
    )
    record["event_id"] = item.get("event_id") or _derived_id(item, record)
    return record


def trip_record(item: Mapping[str, Any], defaults: VehicleDefaults) -> dict[str, Any]:
    """An MDS trip (2.0 start/end locations, or 1.x route) as a ``trips`` record."""
    record: dict[str, Any] = {}
    _put(record, "event_id", item.get("trip_id"))
    _put(record, "trip_id", item.get("trip_id"))
    _put(record, "vehicle_id", item.get("device_id"))
    record["vehicle_type"] = item.get("vehicle_type", defaults.vehicle_type)
    _put(record, "start_time", item.get("start_time"))
    _put(record, "end_time", item.get("end_time"))
    start, end = _trip_points(item)
    for prefix, (lat, lon) in (("start", start), ("end", end)):
        _put(record, f"{prefix}_lat", lat)
        _put(record, f"{prefix}_lon", lon)
    distance = item.get("distance", item.get("trip_distance"))
    _put(record, "distance_m", float(distance) if _is_number(distance) else distance)
    duration = item.get("duration", item.get("trip_duration"))
    _put(record, "duration_s", round(duration) if _is_number(duration) else duration)
    return record


def hour_param(start_ms: int) -> str:
    """The ``YYYY-MM-DDTHH`` (UTC) of the hour starting at ``start_ms`` (MDS 2.0 /trips)."""
    return datetime.fromtimestamp(start_ms / 1000, tz=UTC).strftime("%Y-%m-%dT%H")


def _event_type(item: Mapping[str, Any]) -> str | None:
    types = item.get("event_types")
    if isinstance(types, list):
        for event_type in types:
            if event_type in TYPE_EVENT:
                return TYPE_EVENT[event_type]
        return STATE_EVENT.get(str(item.get("vehicle_state")), "unavailable")
    reason = item.get("event_type_reason")
    if reason in REASON_EVENT:
        return REASON_EVENT[str(reason)]
    legacy = item.get("event_type")
    return LEGACY_TYPE_EVENT.get(str(legacy), "unavailable") if legacy is not None else None


def _event_point(item: Mapping[str, Any]) -> tuple[Any, Any]:
    location = item.get("location")
    if isinstance(location, Mapping):
        return location.get("lat"), location.get("lng")
    return _feature_point(item.get("event_location"))


def _trip_points(item: Mapping[str, Any]) -> tuple[tuple[Any, Any], tuple[Any, Any]]:
    start, end = item.get("start_location"), item.get("end_location")
    if isinstance(start, Mapping) and isinstance(end, Mapping):
        return (start.get("lat"), start.get("lng")), (end.get("lat"), end.get("lng"))
    route = item.get("route")
    features = route.get("features") if isinstance(route, Mapping) else None
    if isinstance(features, list) and features:
        return _feature_point(features[0]), _feature_point(features[-1])
    return (None, None), (None, None)


def _feature_point(feature: Any) -> tuple[Any, Any]:
    """``(lat, lon)`` of a GeoJSON Point feature (coordinates are ``[lon, lat]``)."""
    geometry = feature.get("geometry") if isinstance(feature, Mapping) else None
    coordinates = geometry.get("coordinates") if isinstance(geometry, Mapping) else None
    if isinstance(coordinates, list) and len(coordinates) >= 2:
        return coordinates[1], coordinates[0]
    return None, None


def _battery(item: Mapping[str, Any]) -> Any:
    if "battery_percent" in item:  # 2.0: integer percent
        return item["battery_percent"]
    legacy = item.get("battery_pct")  # 1.x: a fraction 0..1
    return round(legacy * 100) if _is_number(legacy) and 0 <= legacy <= 1 else legacy


def _derived_id(item: Mapping[str, Any], record: Mapping[str, Any]) -> str:
    """1.x status changes have no id: derive one, so a re-read page repeats the same ids."""
    seed = f"{item.get('device_id')}|{record.get('timestamp')}|{record.get('event_type')}"
    return str(uuid.uuid5(_DERIVED, seed))


def _put(record: dict[str, Any], name: str, value: Any) -> None:
    if value is not None:
        record[name] = value


def _is_number(value: Any) -> TypeGuard[int | float]:
    return isinstance(value, int | float) and not isinstance(value, bool)
