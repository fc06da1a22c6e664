"""Seeded public GBFS feeds (v2.3 ``free_bike_status``, v3 ``vehicle_status``) of a fleet,
with discovery (``gbfs.json``), ``system_information`` and ``vehicle_types``.

Unlike the MDS simulator, GBFS ids rotate: the spec requires a new random ``vehicle_id``
after each trip, so a vehicle that leaves the feed for a ride comes back under a new id. A
``rotate=False`` fleet keeps its ids, which is what the GBFS connector's rotation check must
catch; ``expected_violations`` counts the reappearances at a new place that it should see.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from connectors.simulate.base import SimOptions, distance_m, offset_m, seeded_random, seeded_uuid

BBOX = (4.77, 45.70, 4.92, 45.81)
CENTRE = (45.7578, 4.8320)
SAME_PLACE_M = 100.0  # the GBFS connector's default: a vehicle that moved less has not ridden
VEHICLE_TYPES = (
    {
        "vehicle_type_id": "scooter",
        "form_factor": "scooter_standing",
        "propulsion_type": "electric",
        "max_range_meters": 30000,
    },
    {
        "vehicle_type_id": "ebike",
        "form_factor": "bicycle",
        "propulsion_type": "electric_assist",
        "max_range_meters": 60000,
    },
)


@dataclass
class _GbfsVehicle:
    vehicle_id: str
    type_id: str
    lat: float
    lon: float
    fuel: float
    riding_polls: int = 0  # > 0 while in a trip: absent from the feed
    reserved: bool = False
    disabled: bool = False
    listed_since_arrival: bool = False  # shown in a snapshot since it last arrived
    listed_before_trip: bool = False  # was shown before its current or last trip
    unrotated_return: bool = False  # came back elsewhere under the same id, not yet shown


@dataclass
class GbfsFeedSimulator:
    """Snapshots of a GBFS vehicle feed, one per ``poll()``; ids rotate after trips."""

    options: SimOptions = field(default_factory=SimOptions)
    rotate: bool = True
    trip_share: float = 0.1  # share of parked vehicles that start a trip between two polls
    poll_interval_s: int = 60
    ttl_s: int = 60
    expected_violations: int = 0  # unrotated returns visible in the snapshots rendered so far
    _rng: random.Random = field(init=False)
    _fleet: list[_GbfsVehicle] = field(init=False)
    _clock_ms: int = field(init=False)

    def __post_init__(self) -> None:
        self._rng = seeded_random(self.options.seed)
        self._clock_ms = self.options.start_ms
        self._fleet = [self._vehicle() for _ in range(self.options.size or 100)]

    @property
    def clock_ms(self) -> int:
        """The feed's current time (ms)."""
        return self._clock_ms

    @property
    def vehicle_ids(self) -> frozenset[str]:
        """Current ids of the whole fleet, riding or not (for tests that scan for leaks)."""
        return frozenset(v.vehicle_id for v in self._fleet)

    def poll(self) -> None:
        """Advance the feed by one polling interval: trips start, end, ids rotate."""
        self._clock_ms += self.poll_interval_s * 1000
        for vehicle in self._fleet:
            if vehicle.riding_polls > 0:
                vehicle.riding_polls -= 1
                if vehicle.riding_polls == 0:
                    self._arrive(vehicle)
            elif not vehicle.disabled and self._rng.random() < self.trip_share:
                vehicle.riding_polls = self._rng.randint(1, 3)
                vehicle.listed_before_trip = vehicle.listed_since_arrival
            else:
                vehicle.reserved = self._rng.random() < 0.03
                vehicle.disabled = vehicle.fuel < 0.1

    def _arrive(self, vehicle: _GbfsVehicle) -> None:
        # Rides are 300 m to 2 km long: always farther than the connector's "same place".
        north = self._rng.choice((-1, 1)) * self._rng.uniform(300, 2000)
        east = self._rng.uniform(-2000, 2000)
        lat, lon = offset_m(vehicle.lat, vehicle.lon, north, east)
        lat = min(max(lat, BBOX[1] + 0.03), BBOX[3] - 0.03)
        lon = min(max(lon, BBOX[0] + 0.03), BBOX[2] - 0.03)
        moved = math.hypot(*distance_m(vehicle.lat, vehicle.lon, lat, lon))
        vehicle.lat, vehicle.lon = lat, lon
        vehicle.fuel = max(0.0, vehicle.fuel - self._rng.uniform(0.02, 0.1))
        vehicle.listed_since_arrival = False
        if self.rotate:
            vehicle.vehicle_id = seeded_uuid(self._rng)
        else:
            vehicle.unrotated_return = moved > SAME_PLACE_M

    def _vehicle(self) -> _GbfsVehicle:
        rng = self._rng
        lat, lon = offset_m(*CENTRE, rng.gauss(0, 1500), rng.gauss(0, 1500))
        return _GbfsVehicle(
            vehicle_id=seeded_uuid(rng),
            type_id="ebike" if rng.random() < 0.2 else "scooter",
            lat=lat,
            lon=lon,
            fuel=rng.uniform(0.3, 1.0),
        )

    def _listed(self) -> list[_GbfsVehicle]:
        """Vehicles shown in a snapshot; counts the violations an observer can see in it."""
        # Vehicles in an active rental MUST NOT appear in the feed (GBFS vehicle_status).
        listed = [v for v in self._fleet if v.riding_polls == 0]
        for vehicle in listed:
            # Visible only to someone who saw the id before the trip and sees it again now.
            if vehicle.unrotated_return and vehicle.listed_before_trip:
                self.expected_violations += 1
            vehicle.unrotated_return = False
            vehicle.listed_since_arrival = True
        return listed

    def free_bike_status(self) -> dict[str, Any]:
        """The current GBFS v2.3 ``free_bike_status.json`` (times in POSIX seconds)."""
        now_s = self._clock_ms // 1000
        bikes = [
            {
                "bike_id": v.vehicle_id,
                "lat": round(v.lat, 6),
                "lon": round(v.lon, 6),
                "is_reserved": v.reserved,
                "is_disabled": v.disabled,
                "vehicle_type_id": v.type_id,
                "last_reported": now_s - self._rng.randrange(60),
                "current_fuel_percent": round(v.fuel, 2),
                "current_range_meters": int(v.fuel * 30000),
            }
            for v in self._listed()
        ]
        return {
            "last_updated": now_s,
            "ttl": self.ttl_s,
            "version": "2.3",
            "data": {"bikes": bikes},
        }

    def vehicle_status(self) -> dict[str, Any]:
        """The current GBFS v3.0 ``vehicle_status.json`` (times as RFC 3339 strings)."""
        vehicles = [
            {
                "vehicle_id": v.vehicle_id,
                "lat": round(v.lat, 6),
                "lon": round(v.lon, 6),
                "is_reserved": v.reserved,
                "is_disabled": v.disabled,
                "vehicle_type_id": v.type_id,
                "last_reported": _rfc3339(self._clock_ms - self._rng.randrange(60_000)),
                "current_fuel_percent": round(v.fuel, 2),
                "current_range_meters": int(v.fuel * 30000),
            }
            for v in self._listed()
        ]
        return {
            "last_updated": _rfc3339(self._clock_ms),
            "ttl": self.ttl_s,
            "version": "3.0",
            "data": {"vehicles": vehicles},
        }

    def discovery(self, base_url: str, version: str = "3.0") -> dict[str, Any]:
        """``gbfs.json``: v3 ``data.feeds``, v2.3 one feeds list per language (here ``fr``)."""
        vehicles = "vehicle_status" if version.startswith("3") else "free_bike_status"
        names = ("system_information", "vehicle_types", vehicles)
        feeds = [{"name": name, "url": f"{base_url}/{name}.json"} for name in names]
        data: dict[str, Any] = (
            {"feeds": feeds} if version.startswith("3") else {"fr": {"feeds": feeds}}
        )
        return self._document(version, 60, data)

    def system_information(self, version: str = "3.0") -> dict[str, Any]:
        """``system_information.json`` with the fields its version requires."""
        data: dict[str, Any] = {"system_id": "lyon-sim", "timezone": "Europe/Paris"}
        if version.startswith("3"):
            data |= {
                "languages": ["fr"],
                "name": [{"text": "Trottinettes simulées", "language": "fr"}],
                "opening_hours": "24/7",
                "feed_contact_email": "gbfs@scootco.example",
            }
        else:
            data |= {"language": "fr", "name": "Trottinettes simulées"}
        return self._document(version, 3600, data)

    def _document(self, version: str, ttl: int, data: dict[str, Any]) -> dict[str, Any]:
        updated: Any = (
            _rfc3339(self._clock_ms) if version.startswith("3") else self._clock_ms // 1000
        )
        return {"last_updated": updated, "ttl": ttl, "version": version, "data": data}

    def vehicle_types(self, version: str = "3.0") -> dict[str, Any]:
        """``vehicle_types.json``, so the connector can name form factors and propulsion."""
        updated: Any = (
            _rfc3339(self._clock_ms) if version.startswith("3") else self._clock_ms // 1000
        )
        return {
            "last_updated": updated,
            "ttl": 86400,
            "version": version,
            "data": {"vehicle_types": list(VEHICLE_TYPES)},
        }


def _rfc3339(ms: int) -> str:
    return datetime.fromtimestamp(ms // 1000, tz=UTC).isoformat()
