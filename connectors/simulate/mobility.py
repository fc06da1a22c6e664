"""A seeded fleet of shared e-scooters and e-bikes in Lyon (contract ``lyon-micromobility``).

Vehicles wait where they were parked, get rented with a daily demand profile, ride along a
street grid to a destination drawn by a gravity model over the city's hot spots (Part-Dieu,
Bellecour, Perrache, Confluence, ...), drain their battery, and go off-street to charge when
it runs low. Output: ``vehicle_events`` (available, reserved, trip_start, trip_end,
unavailable) and ``trips`` records matching ``mds_vehicle_event.avsc`` / ``mds_trip.avsc``.
Vehicle ids are persistent (the contract's subject is the vehicle, as in MDS); rotating
GBFS ids are produced by ``connectors.simulate.gbfs``.
"""

from __future__ import annotations

import heapq
import itertools
import math
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, ClassVar

from connectors.simulate.base import (
    HOUR_MS,
    MINUTE_MS,
    BoundedDisorder,
    SimOptions,
    SimRecord,
    cumulative,
    distance_m,
    local_hour,
    offset_m,
    seeded_random,
    seeded_uuid,
    weighted_index,
)

CONTRACT_ID = "lyon-micromobility"
BBOX = (4.77, 45.70, 4.92, 45.81)  # the example contract's territory
MARGIN_DEG = 0.004  # keep generated points ~300 m inside the territory's edge
PROVIDER_ID = str(uuid.uuid5(uuid.NAMESPACE_DNS, "scootco.example"))
DEFAULT_FLEET = 500
STREET_SPACING_M = 90.0
MAX_DISORDER_MS = 20_000  # well inside the stream's 5-minute allowed lateness
LOW_BATTERY_PCT = 20

# (name, lat, lon, attractiveness): where trips start and end most.
HOT_SPOTS: tuple[tuple[str, float, float, float], ...] = (
    ("Part-Dieu", 45.7606, 4.8593, 10.0),
    ("Bellecour", 45.7578, 4.8320, 9.0),
    ("Terreaux", 45.7673, 4.8343, 8.0),
    ("Perrache", 45.7486, 4.8258, 6.0),
    ("Confluence", 45.7413, 4.8180, 6.0),
    ("Guillotiere", 45.7540, 4.8430, 6.0),
    ("Croix-Rousse", 45.7743, 4.8315, 5.0),
    ("Jean-Mace", 45.7455, 4.8420, 5.0),
    ("Gratte-Ciel", 45.7690, 4.8800, 5.0),
    ("La-Doua", 45.7800, 4.8700, 5.0),
    ("Vieux-Lyon", 45.7622, 4.8270, 4.0),
    ("Brotteaux", 45.7669, 4.8516, 4.0),
    ("Gerland", 45.7290, 4.8310, 4.0),
    ("Monplaisir", 45.7450, 4.8700, 3.0),
    ("Vaise", 45.7740, 4.8040, 3.0),
)
_SPOT_WEIGHTS = cumulative(spot[3] for spot in HOT_SPOTS)
# Metres per degree around Lyon, for the gravity model's many distance computations.
_M_PER_DEG_LAT = 111_132.0
_M_PER_DEG_LON = 111_320.0 * math.cos(math.radians(45.75))
GRAVITY_SCALE_M = 2500.0  # attraction decays by e every 2.5 km
# Rentals per hour of local day, relative to the peak (commutes at 8h and 17-18h).
DEMAND = (
    0.15,
    0.1,
    0.05,
    0.05,
    0.05,
    0.1,
    0.3,
    0.8,
    1.0,
    0.7,
    0.5,
    0.6,
    0.8,
    0.7,
    0.6,
    0.7,
    0.9,
    1.0,
    0.9,
    0.7,
    0.6,
    0.5,
    0.4,
    0.25,
)
PEAK_IDLE_MIN = 35.0

_AVAILABLE, _RESERVED, _RIDING, _PARKED, _OFF_STREET = range(5)


@dataclass(slots=True)
class _Vehicle:
    vehicle_id: str
    vehicle_type: str
    propulsion: str
    lat: float
    lon: float
    battery: float
    state: int = _OFF_STREET
    trip_id: str | None = None
    trip_start: int = 0
    start_lat: float = 0.0
    start_lon: float = 0.0
    distance: float = 0.0


class MobilitySimulator:
    """Endless MDS vehicle events and trips of a seeded fleet; see the module docstring."""

    contract_id: str = CONTRACT_ID
    streams: tuple[str, ...] = ("vehicle_events", "trips")
    time_fields: ClassVar[dict[str, tuple[str, ...]]] = {
        "vehicle_events": ("timestamp",),
        "trips": ("start_time", "end_time"),
    }
    position_fields: ClassVar[dict[str, tuple[tuple[str, str], ...]]] = {
        "vehicle_events": (("lat", "lon"),),
        "trips": (("start_lat", "start_lon"), ("end_lat", "end_lon")),
    }

    def __init__(self, options: SimOptions | None = None) -> None:
        self.options = options or SimOptions()
        self._rng = seeded_random(self.options.seed)
        self._disorder = BoundedDisorder(seeded_random(self.options.seed + 1), MAX_DISORDER_MS)
        self._fleet = [self._new_vehicle() for _ in range(self.options.size or DEFAULT_FLEET)]

    def records(self) -> Iterator[SimRecord]:
        """Events of the whole fleet, roughly in time order (bounded disorder).

        Every call starts over from the seed, so two calls give the same records.
        """
        return type(self)(self.options)._run()

    def _run(self) -> Iterator[SimRecord]:
        agenda: list[tuple[int, int, int]] = []
        seq = itertools.count()
        start = self.options.start_ms
        for index in range(len(self._fleet)):
            # Deployment in the morning: each vehicle appears within the first ten minutes.
            heapq.heappush(agenda, (start + self._rng.randrange(10 * MINUTE_MS), next(seq), index))
        while True:
            clock, _, index = heapq.heappop(agenda)
            next_time = self._step(self._fleet[index], clock)
            heapq.heappush(agenda, (next_time, next(seq), index))
            yield from self._disorder.release(clock)

    def _new_vehicle(self) -> _Vehicle:
        rng = self._rng
        bike = rng.random() < 0.15
        lat, lon = self._near_spot(weighted_index(rng, _SPOT_WEIGHTS))
        return _Vehicle(
            vehicle_id=seeded_uuid(rng),
            vehicle_type="bicycle" if bike else "scooter_standing",
            propulsion="electric_assist" if bike else "electric",
            lat=lat,
            lon=lon,
            battery=rng.uniform(60.0, 100.0),
        )

    def _step(self, vehicle: _Vehicle, clock: int) -> int:
        """Apply the vehicle's next transition at ``clock``; returns when it acts next."""
        if vehicle.state == _OFF_STREET:
            return self._deploy(vehicle, clock)
        if vehicle.state == _AVAILABLE:
            return self._on_demand(vehicle, clock)
        if vehicle.state == _RESERVED:
            return self._start_trip(vehicle, clock)
        if vehicle.state == _RIDING:
            return self._end_trip(vehicle, clock)
        return self._after_parking(vehicle, clock)

    def _deploy(self, vehicle: _Vehicle, clock: int) -> int:
        vehicle.state = _AVAILABLE
        self._emit_event(vehicle, "available", clock)
        return clock + self._idle_ms(clock)

    def _on_demand(self, vehicle: _Vehicle, clock: int) -> int:
        roll = self._rng.random()
        if roll < 0.015:
            # Field maintenance: off the street for 30 minutes to 2 hours, back where it was.
            vehicle.state = _OFF_STREET
            self._emit_event(vehicle, "unavailable", clock)
            return clock + self._rng.randrange(30 * MINUTE_MS, 2 * HOUR_MS)
        if roll < 0.115:
            vehicle.state = _RESERVED
            vehicle.trip_id = seeded_uuid(self._rng)
            self._emit_event(vehicle, "reserved", clock)
            return clock + self._rng.randrange(MINUTE_MS, 8 * MINUTE_MS)
        return self._start_trip(vehicle, clock)

    def _start_trip(self, vehicle: _Vehicle, clock: int) -> int:
        rng = self._rng
        vehicle.trip_id = vehicle.trip_id or seeded_uuid(rng)
        vehicle.state = _RIDING
        vehicle.trip_start = clock
        vehicle.start_lat, vehicle.start_lon = vehicle.lat, vehicle.lon
        self._emit_event(vehicle, "trip_start", clock)
        dest_lat, dest_lon = self._near_spot(self._destination(vehicle))
        north, east = distance_m(vehicle.lat, vehicle.lon, dest_lat, dest_lon)
        # Streets are a grid: the ride is the Manhattan distance plus a small detour.
        vehicle.distance = (abs(north) + abs(east)) * rng.uniform(1.02, 1.15) + 40.0
        vehicle.lat, vehicle.lon = dest_lat, dest_lon
        speed_ms = rng.uniform(9.0, 18.0) / 3.6
        return clock + int((vehicle.distance / speed_ms + rng.uniform(20, 90)) * 1000)

    def _end_trip(self, vehicle: _Vehicle, clock: int) -> int:
        drain = vehicle.distance / 1000.0 * self._rng.uniform(2.0, 3.2)
        vehicle.battery = max(1.0, vehicle.battery - drain)
        self._emit_event(vehicle, "trip_end", clock)
        self._emit_trip(vehicle, clock)
        vehicle.trip_id = None
        vehicle.state = _PARKED
        # The status settles a few seconds after the ride is closed in the app.
        return clock + self._rng.randrange(2_000, 15_000)

    def _after_parking(self, vehicle: _Vehicle, clock: int) -> int:
        if vehicle.battery < LOW_BATTERY_PCT:
            # Collected for charging, redeployed at a hot spot 3 to 8 hours later.
            vehicle.state = _OFF_STREET
            self._emit_event(vehicle, "unavailable", clock)
            vehicle.battery = self._rng.uniform(92.0, 100.0)
            vehicle.lat, vehicle.lon = self._near_spot(weighted_index(self._rng, _SPOT_WEIGHTS))
            return clock + self._rng.randrange(3 * HOUR_MS, 8 * HOUR_MS)
        vehicle.state = _AVAILABLE
        self._emit_event(vehicle, "available", clock)
        return clock + self._idle_ms(clock)

    def _idle_ms(self, clock: int) -> int:
        demand = DEMAND[int(local_hour(clock))]
        minutes = self._rng.expovariate(demand / PEAK_IDLE_MIN)
        return int(min(minutes, 8 * 60.0) * MINUTE_MS) + 1_000

    def _destination(self, vehicle: _Vehicle) -> int:
        """Gravity model: attractiveness over exp(distance / scale) from where the trip starts."""
        here_lat, here_lon = vehicle.lat, vehicle.lon
        weights = [
            mass
            * math.exp(
                -math.hypot((lat - here_lat) * _M_PER_DEG_LAT, (lon - here_lon) * _M_PER_DEG_LON)
                / GRAVITY_SCALE_M
            )
            for _, lat, lon, mass in HOT_SPOTS
        ]
        return weighted_index(self._rng, cumulative(weights))

    def _near_spot(self, index: int) -> tuple[float, float]:
        """A point on a street within a few hundred metres of a hot spot, inside the territory."""
        _, lat, lon, _ = HOT_SPOTS[index]
        rng = self._rng
        lat, lon = offset_m(lat, lon, rng.gauss(0.0, 350.0), rng.gauss(0.0, 350.0))
        lat, lon = _snap_to_street(lat, lon, rng.random() < 0.5)
        west, south, east, north = BBOX
        return (
            min(max(lat, south + MARGIN_DEG), north - MARGIN_DEG),
            min(max(lon, west + MARGIN_DEG), east - MARGIN_DEG),
        )

    def _emit_event(self, vehicle: _Vehicle, event_type: str, time_ms: int) -> None:
        in_trip = event_type in ("reserved", "trip_start", "trip_end")
        record: dict[str, Any] = {
            "event_id": seeded_uuid(self._rng),
            "vehicle_id": vehicle.vehicle_id,
            "provider_id": PROVIDER_ID,
            "vehicle_type": vehicle.vehicle_type,
            "propulsion": vehicle.propulsion,
            "event_type": event_type,
            "timestamp": time_ms,
            "lat": round(vehicle.start_lat if event_type == "trip_start" else vehicle.lat, 6),
            "lon": round(vehicle.start_lon if event_type == "trip_start" else vehicle.lon, 6),
            "battery_pct": int(vehicle.battery),
            "trip_id": vehicle.trip_id if in_trip else None,
        }
        self._disorder.push(time_ms, vehicle.vehicle_id, SimRecord("vehicle_events", record))

    def _emit_trip(self, vehicle: _Vehicle, end_ms: int) -> None:
        record: dict[str, Any] = {
            "event_id": seeded_uuid(self._rng),
            "trip_id": vehicle.trip_id or "",  # always set by _start_trip
            "vehicle_id": vehicle.vehicle_id,
            "vehicle_type": vehicle.vehicle_type,
            "start_time": vehicle.trip_start,
            "end_time": end_ms,
            "start_lat": round(vehicle.start_lat, 6),
            "start_lon": round(vehicle.start_lon, 6),
            "end_lat": round(vehicle.lat, 6),
            "end_lon": round(vehicle.lon, 6),
            "distance_m": round(vehicle.distance, 1),
            "duration_s": (end_ms - vehicle.trip_start) // 1000,
        }
        self._disorder.push(end_ms, vehicle.vehicle_id, SimRecord("trips", record))


def _snap_to_street(lat: float, lon: float, along_lat: bool) -> tuple[float, float]:
    """Move the point onto the nearest street of a regular grid (one axis snapped)."""
    west, south, _, _ = BBOX
    north_m, east_m = distance_m(south, west, lat, lon)
    if along_lat:
        north_m = round(north_m / STREET_SPACING_M) * STREET_SPACING_M
    else:
        east_m = round(east_m / STREET_SPACING_M) * STREET_SPACING_M
    return offset_m(south, west, north_m, east_m)
