"""GBFS v2.3 and v3 feeds: availability observations, and a check of vehicle id rotation.

``free_bike_status.json`` (v2.x, ``data.bikes[].bike_id``, POSIX-second times) and
``vehicle_status.json`` (v3, ``data.vehicles[].vehicle_id``, RFC 3339 times) parse into one
``VehicleSnapshot``. What a URL serves is told by its content (``is_vehicle_feed``,
``discover_feeds``), never by its name: systems publish ``gbfs.json`` under any path, with
query strings. ``AvailabilityTracker`` turns successive snapshots into ``vehicle_events``
records (``available``, ``reserved``, ``unavailable``) for vehicles that appeared, changed
state or moved, so re-polling an unchanged feed emits nothing. A snapshot says what each
vehicle's state *is* at the feed's ``last_updated`` (``last_reported`` is only when the
vehicle last called home: a vehicle parked for an hour is available now), so that is the
record's time; the tracker counts a vehicle as sent only when the poller ``commit``s it.
``station_status.json`` parses into ``StationStatus`` (counts only; it has no vehicle to
attach an event to, so the poller reports stations seen without emitting events).

GBFS requires a vehicle id to rotate to a random string after each trip (v2.0+), and a
vehicle on a trip must not be listed. So an id that leaves the feed and comes back somewhere
else has made a trip without rotating: ``RotationTracker`` counts these violations. It keeps
salted hashes of ids only (like the duplicate filter) and never logs them.
"""

from __future__ import annotations

import math
import re
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TypeGuard

from connectors.base import ConnectorError

SAME_PLACE_M = 100.0
MAX_TTL_S = 86_400  # a feed's ttl is trusted up to a day: 1e306 s must not stop the polling
# Form factors of GBFS vehicle_types, mapped to the vehicle_type values of our MDS schema.
FORM_FACTORS = {
    "bicycle": "bicycle",
    "cargo_bicycle": "bicycle",
    "scooter": "scooter_standing",
    "scooter_standing": "scooter_standing",
    "scooter_seated": "scooter_seated",
    "car": "car",
    "moped": "moped",
    "other": "other",
}
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
_EVENT_IDS = uuid.UUID("6f1d0d2c-5a52-4c8e-9b1e-7c4f3a1f0b9e")  # namespace of derived ids


@dataclass(frozen=True)
class GbfsVehicle:
    """One vehicle as listed in a vehicle feed."""

    vehicle_id: str
    lat: float
    lon: float
    is_reserved: bool
    is_disabled: bool
    vehicle_type_id: str | None
    last_reported_ms: int | None
    fuel_percent: float | None

    @property
    def state(self) -> str:
        """The ``event_type`` this observation stands for."""
        return (
            "unavailable" if self.is_disabled else "reserved" if self.is_reserved else "available"
        )


@dataclass(frozen=True)
class VehicleSnapshot:
    """A parsed vehicle feed: version, freshness and the vehicles listed."""

    version: str
    last_updated_ms: int
    ttl_s: int
    vehicles: tuple[GbfsVehicle, ...]
    skipped: int  # entries without an id or a position (docked vehicles, malformed)


@dataclass(frozen=True)
class StationStatus:
    """Counts of one station."""

    station_id: str
    vehicles_available: int
    docks_available: int | None
    is_renting: bool


# RFC 3339 section 5.6 date-time (JSON Schema ``format: date-time``, GBFS v3 Timestamp): "T"
# and "Z" may be lowercase (section 5.6, note), the fraction has any number of digits.
_RFC3339 = re.compile(
    r"(\d{4}-\d{2}-\d{2})[Tt](\d{2}:\d{2}:\d{2})(?:\.(\d+))?([Zz]|[+-]\d{2}:\d{2})",
    re.ASCII,
)


@dataclass(frozen=True)
class Feeds:
    """The URLs of a system's feeds that the poller reads."""

    vehicles: str
    types: str | None = None
    stations: str | None = None


def gbfs_time_ms(value: Any) -> int | None:
    """A GBFS time as ms: POSIX seconds (v1-v2) or an RFC 3339 date-time string (v3)."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        try:  # 1e306 s is inf ms; 10**400 is no float: not a time, never an OverflowError
            return int(value * 1000) if math.isfinite(value * 1000) else None
        except OverflowError:
            return None
    if isinstance(value, str):
        return rfc3339_ms(value)
    return None


def rfc3339_ms(text: str) -> int | None:
    """An RFC 3339 ``date-time`` as ms since the epoch; None if it is not one."""
    match = _RFC3339.fullmatch(text)
    if match is None:
        return None
    date, time, fraction, offset = match.groups()
    micro = f".{(fraction or '0')[:6]}"
    zone = "+00:00" if offset in ("Z", "z") else offset
    try:
        moment = datetime.fromisoformat(f"{date}T{time}{micro}{zone}")
        # 9999-12-31T23:59:59-23:59 is past year 9999 in UTC: OverflowError, not a time.
        return int(moment.astimezone(UTC).timestamp() * 1000)
    except (ValueError, OverflowError):  # 2026-02-30, 25:00:00, a leap second, out of range
        return None


def ttl_ms(doc: Any) -> int:
    """A document's ``ttl`` in ms (0, read again next time, when absent or not a number), at
    most ``MAX_TTL_S``."""
    ttl = doc.get("ttl") if isinstance(doc, Mapping) else None
    return int(min(ttl, MAX_TTL_S) * 1000) if _number(ttl) and ttl > 0 else 0


def is_vehicle_feed(doc: Any) -> bool:
    """Whether a document is ``vehicle_status`` (v3) or ``free_bike_status`` (v2.x)."""
    data = doc.get("data") if isinstance(doc, Mapping) else None
    return isinstance(data, Mapping) and (
        isinstance(data.get("vehicles"), list) or isinstance(data.get("bikes"), list)
    )


def feeds_of(named: Mapping[str, str]) -> Feeds:
    """The feeds the poller reads, from a discovery's name -> URL."""
    vehicles = named.get("vehicle_status") or named.get("free_bike_status")
    if vehicles is None:
        msg = "gbfs.json lists no vehicle_status or free_bike_status feed"
        raise ConnectorError(msg)
    return Feeds(vehicles, named.get("vehicle_types"), named.get("station_status"))


def _header(doc: Any, what: str) -> tuple[str, int, int, Mapping[str, Any]]:
    if not isinstance(doc, Mapping) or not isinstance(doc.get("data"), Mapping):
        msg = f"{what}: not a GBFS document (no data object)"
        raise ConnectorError(msg)
    updated = gbfs_time_ms(doc.get("last_updated"))
    if updated is None:
        msg = f"{what}: last_updated missing or not a time"
        raise ConnectorError(msg)
    return str(doc.get("version", "1.0")), updated, ttl_ms(doc) // 1000, doc["data"]


def parse_vehicle_feed(doc: Any) -> VehicleSnapshot:
    """``free_bike_status`` (v2.x: ``bikes``) or ``vehicle_status`` (v3: ``vehicles``)."""
    version, updated, ttl, data = _header(doc, "vehicle feed")
    entries = data.get("vehicles") if "vehicles" in data else data.get("bikes")
    if not isinstance(entries, list):
        msg = "vehicle feed: data has neither a vehicles nor a bikes list"
        raise ConnectorError(msg)
    vehicles = [v for v in (_vehicle(e) for e in entries) if v is not None]
    return VehicleSnapshot(version, updated, ttl, tuple(vehicles), len(entries) - len(vehicles))


def _vehicle(entry: Any) -> GbfsVehicle | None:
    if not isinstance(entry, Mapping):
        return None
    vehicle_id = entry.get("vehicle_id", entry.get("bike_id"))
    lat, lon = entry.get("lat"), entry.get("lon")
    if not isinstance(vehicle_id, str) or not _number(lat) or not _number(lon):
        return None  # docked vehicles (v3 station_id, no position) are not free-floating
    fuel = entry.get("current_fuel_percent")
    return GbfsVehicle(
        vehicle_id=vehicle_id,
        lat=float(lat),
        lon=float(lon),
        is_reserved=entry.get("is_reserved") is True,
        is_disabled=entry.get("is_disabled") is True,
        vehicle_type_id=entry.get("vehicle_type_id")
        if isinstance(entry.get("vehicle_type_id"), str)
        else None,
        last_reported_ms=gbfs_time_ms(entry.get("last_reported")),
        fuel_percent=float(fuel) if _number(fuel) else None,
    )


def parse_station_status(doc: Any) -> tuple[int, tuple[StationStatus, ...]]:
    """``station_status`` (v2.x ``num_bikes_available``, v3 ``num_vehicles_available``)."""
    _, _, ttl, data = _header(doc, "station_status")
    stations = []
    for entry in data.get("stations") or ():
        if not isinstance(entry, Mapping) or not isinstance(entry.get("station_id"), str):
            continue
        available = entry.get("num_vehicles_available", entry.get("num_bikes_available"))
        docks = entry.get("num_docks_available")
        stations.append(
            StationStatus(
                station_id=entry["station_id"],
                vehicles_available=int(available) if _number(available) else 0,
                docks_available=int(docks) if _number(docks) else None,
                is_renting=entry.get("is_renting") is not False,
            )
        )
    return ttl, tuple(stations)


def parse_vehicle_types(doc: Any) -> dict[str, tuple[str, str]]:
    """``vehicle_type_id`` -> (our ``vehicle_type``, ``propulsion``)."""
    _, _, _, data = _header(doc, "vehicle_types")
    types: dict[str, tuple[str, str]] = {}
    for entry in data.get("vehicle_types") or ():
        if isinstance(entry, Mapping) and isinstance(entry.get("vehicle_type_id"), str):
            types[entry["vehicle_type_id"]] = (
                FORM_FACTORS.get(str(entry.get("form_factor")), "other"),
                PROPULSION.get(str(entry.get("propulsion_type")), "human"),
            )
    return types


def discover_feeds(doc: Any, language: str | None = None) -> dict[str, str]:
    """Feed name -> URL from ``gbfs.json`` (v2.x: per language; v3: ``data.feeds``)."""
    _, _, _, data = _header(doc, "gbfs.json")
    feeds = data.get("feeds")
    if feeds is None:  # v2.x: one feeds list per language
        by_language = [v for k, v in sorted(data.items()) if language in (None, k)]
        feeds = (
            by_language[0].get("feeds")
            if by_language and isinstance(by_language[0], Mapping)
            else None
        )
    if not isinstance(feeds, list):
        msg = "GBFS: the document is neither a discovery (feeds list) nor a vehicle feed"
        raise ConnectorError(msg)
    return {
        f["name"]: f["url"]
        for f in feeds
        if isinstance(f, Mapping)
        and isinstance(f.get("name"), str)
        and isinstance(f.get("url"), str)
    }


def distance_m(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    """Equirectangular distance in metres (exact enough below a few kilometres)."""
    x = math.radians(lon2 - lon1) * math.cos(math.radians((lat1 + lat2) / 2))
    return math.hypot(x, math.radians(lat2 - lat1)) * 6_371_000.0


class RotationTracker:
    """Counts vehicle ids that came back to the feed at another place (a trip, unrotated)."""

    def __init__(self, same_place_m: float = SAME_PLACE_M, memory_ms: int = 24 * 3_600_000) -> None:
        self.same_place_m = same_place_m
        self.memory_ms = memory_ms
        self._listed: dict[int, tuple[float, float]] = {}  # hash(id) -> position, last poll
        self._gone: dict[int, tuple[float, float, int]] = {}  # left the feed: position, when

    def observe(self, snapshot: VehicleSnapshot) -> int:
        """Violations in this snapshot compared with the earlier ones."""
        now = snapshot.last_updated_ms
        listed = {hash(v.vehicle_id): (v.lat, v.lon) for v in snapshot.vehicles}
        violations = 0
        for key, (lat, lon) in listed.items():
            gone = self._gone.pop(key, None)
            if gone is not None and distance_m(gone[0], gone[1], lat, lon) > self.same_place_m:
                violations += 1
        for key, position in self._listed.items():
            if key not in listed:
                self._gone[key] = (*position, now)
        self._listed = listed
        self._gone = {k: v for k, v in self._gone.items() if now - v[2] <= self.memory_ms}
        return violations


class AvailabilityTracker:
    """Turns snapshots into ``vehicle_events`` records for what changed since the last one.

    ``changes`` proposes records; ``commit`` records which vehicles were really sent, so a
    record that never reached Kafka (or was refused as too late) is proposed again. A record
    refused as too late is proposed again only from a snapshot with another ``last_updated``:
    the same stale snapshot, polled again, would only be refused again (one more DLQ record
    per vehicle and poll).
    """

    def __init__(
        self,
        provider_id: str,
        feed_name: str,
        types: Mapping[str, tuple[str, str]] | None = None,
        same_place_m: float = SAME_PLACE_M,
    ) -> None:
        self.provider_id = provider_id
        self.feed_name = feed_name
        self.types = dict(types or {})
        self.same_place_m = same_place_m
        self._last: dict[str, GbfsVehicle] = {}
        self._too_late: dict[str, int] = {}  # vehicle id -> last_updated of its refused record

    def changes(self, snapshot: VehicleSnapshot) -> list[tuple[GbfsVehicle, dict[str, Any]]]:
        """Vehicles new to the feed, in a new state, or moved, each with its record."""
        updated = snapshot.last_updated_ms
        return [
            (v, self._record(v, updated))
            for v in snapshot.vehicles
            if self._changed(v) and self._too_late.get(v.vehicle_id) != updated
        ]

    def commit(
        self,
        snapshot: VehicleSnapshot,
        sent: list[GbfsVehicle],
        too_late: Sequence[GbfsVehicle] = (),
    ) -> None:
        """Remember ``sent`` as reported and ``too_late`` as refused for this snapshot's time;
        forget vehicles the snapshot no longer lists."""
        listed = {v.vehicle_id for v in snapshot.vehicles}
        last = {k: v for k, v in self._last.items() if k in listed}
        last.update((v.vehicle_id, v) for v in sent)
        self._last = last
        refused = {k: t for k, t in self._too_late.items() if k in listed}
        refused.update((v.vehicle_id, snapshot.last_updated_ms) for v in too_late)
        self._too_late = refused

    def _changed(self, vehicle: GbfsVehicle) -> bool:
        last = self._last.get(vehicle.vehicle_id)
        return (
            last is None
            or last.state != vehicle.state
            or distance_m(last.lat, last.lon, vehicle.lat, vehicle.lon) > self.same_place_m
        )

    def _record(self, vehicle: GbfsVehicle, updated_ms: int) -> dict[str, Any]:
        vehicle_type, propulsion = self.types.get(vehicle.vehicle_type_id or "", ("other", "human"))
        # Derived id: re-reading the same snapshot (a restart, a retry) repeats it, so the
        # validator's duplicate filter drops the repeat.
        seed = f"{self.feed_name}|{vehicle.vehicle_id}|{vehicle.state}|{updated_ms}"
        fuel = vehicle.fuel_percent
        return {
            "event_id": str(uuid.uuid5(_EVENT_IDS, seed)),
            "vehicle_id": vehicle.vehicle_id,
            "provider_id": self.provider_id,
            "vehicle_type": vehicle_type,
            "propulsion": propulsion,
            "event_type": vehicle.state,
            "timestamp": updated_ms,
            "lat": vehicle.lat,
            "lon": vehicle.lon,
            "battery_pct": round(fuel * 100) if fuel is not None and 0 <= fuel <= 1 else None,
            "trip_id": None,
        }


def _number(value: Any) -> TypeGuard[int | float]:
    """A finite JSON number that converts to a float (10**400 does not: OverflowError)."""
    if not isinstance(value, int | float) or isinstance(value, bool):
        return False
    try:
        return math.isfinite(value)
    except OverflowError:
        return False
