"""Seeded jam and alert reports from a navigation app in Bordeaux (``bordeaux-navigation``).

Reports arrive as a Poisson process following a daily traffic profile. Each comes from one
app user of a pool (a few heavy reporters, many occasional ones: Zipf-like activity) and lies
on one of the metropolis's main roads (the rocade A630, the quays, the bridges, the cours).
Jams carry a level 1..5, a speed derived from the road's free-flow speed and the level, a
length and the delay it causes; alerts carry a Waze type and subtype and a reliability.
Records match ``nav_jam.avsc`` / ``nav_alert.avsc``; ``waze_feed`` turns them into a Waze for
Cities style document for the pull connector's tests.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any, ClassVar

from connectors.simulate.base import (
    MINUTE_MS,
    BoundedDisorder,
    SimOptions,
    SimRecord,
    cumulative,
    local_hour,
    offset_m,
    seeded_random,
    seeded_uuid,
    weighted_index,
)
from contracts.geometry import Ring

CONTRACT_ID = "bordeaux-navigation"
# The example contract's territory (a coarse outline of the metropolis), (lon, lat).
TERRITORY: Ring = (
    (-0.80, 44.76),
    (-0.47, 44.76),
    (-0.43, 44.84),
    (-0.47, 44.94),
    (-0.70, 44.96),
    (-0.80, 44.90),
    (-0.80, 44.76),
)
DEFAULT_REPORTERS = 5000
MAX_DISORDER_MS = 20_000  # inside the streams' 2-minute allowed lateness
PEAK_REPORTS_PER_MIN = 100.0
JAM_SHARE = 0.6
# Road classes of the Waze feeds: 1 street, 2 primary street, 3 freeway, 6 primary highway.
# (street, road_type, free-flow km/h, weight, (lat, lon) from, (lat, lon) to)
ROADS: tuple[tuple[str, int, float, float, tuple[float, float], tuple[float, float]], ...] = (
    ("Rocade A630 - Pont d'Aquitaine", 3, 90.0, 8.0, (44.8780, -0.5390), (44.8700, -0.5870)),
    ("Rocade A630 - Merignac", 3, 90.0, 9.0, (44.8700, -0.5870), (44.8420, -0.6500)),
    ("Rocade A630 - Pessac", 3, 90.0, 8.0, (44.8420, -0.6500), (44.7950, -0.6300)),
    ("Rocade A630 - Talence", 3, 90.0, 7.0, (44.7950, -0.6300), (44.7880, -0.5700)),
    ("Rocade A630 - Pont Mitterrand", 3, 90.0, 6.0, (44.7880, -0.5700), (44.8080, -0.5180)),
    ("Rocade A630 - Lormont", 3, 90.0, 5.0, (44.8080, -0.5180), (44.8760, -0.5240)),
    ("A63", 3, 110.0, 3.0, (44.7950, -0.6300), (44.7700, -0.6350)),
    ("Quai des Chartrons", 2, 50.0, 4.0, (44.8560, -0.5680), (44.8440, -0.5700)),
    ("Quai Richelieu", 2, 50.0, 3.0, (44.8440, -0.5700), (44.8360, -0.5650)),
    ("Pont de Pierre", 2, 30.0, 3.0, (44.8380, -0.5640), (44.8420, -0.5560)),
    ("Pont Chaban-Delmas", 2, 50.0, 2.0, (44.8600, -0.5560), (44.8620, -0.5480)),
    ("Cours de la Marne", 2, 50.0, 3.0, (44.8290, -0.5700), (44.8260, -0.5560)),
    ("Cours Victor Hugo", 1, 30.0, 2.0, (44.8350, -0.5750), (44.8340, -0.5650)),
    ("Avenue Thiers", 2, 50.0, 2.0, (44.8460, -0.5550), (44.8530, -0.5310)),
    ("Boulevard du President Wilson", 2, 50.0, 2.0, (44.8500, -0.6000), (44.8300, -0.5950)),
    ("Cours de l'Argonne", 1, 30.0, 1.5, (44.8260, -0.5800), (44.8280, -0.5680)),
)
_ROAD_WEIGHTS = cumulative(road[3] for road in ROADS)
# Share of the free-flow speed left at each jam level (level 5 is a standstill).
LEVEL_SPEED = {1: 0.7, 2: 0.5, 3: 0.33, 4: 0.15, 5: 0.0}
_LEVEL_WEIGHTS = cumulative((15.0, 30.0, 30.0, 18.0, 7.0))
ALERT_TYPES: tuple[tuple[str, tuple[str | None, ...], float], ...] = (
    ("ACCIDENT", ("ACCIDENT_MINOR", "ACCIDENT_MAJOR", None), 10.0),
    ("JAM", ("JAM_MODERATE_TRAFFIC", "JAM_HEAVY_TRAFFIC", "JAM_STAND_STILL_TRAFFIC"), 30.0),
    (
        "WEATHERHAZARD",
        (
            "HAZARD_ON_ROAD_OBJECT",
            "HAZARD_ON_ROAD_POT_HOLE",
            "HAZARD_ON_SHOULDER_CAR_STOPPED",
            "HAZARD_WEATHER_FOG",
        ),
        20.0,
    ),
    ("HAZARD", ("HAZARD_ON_ROAD_CAR_STOPPED", "HAZARD_ON_ROAD_CONSTRUCTION", None), 8.0),
    ("ROAD_CLOSED", ("ROAD_CLOSED_EVENT", "ROAD_CLOSED_CONSTRUCTION", "ROAD_CLOSED_HAZARD"), 5.0),
    ("POLICE", ("POLICE_VISIBLE", "POLICE_HIDING"), 12.0),
    ("CONSTRUCTION", (None,), 5.0),
    ("MISC", (None,), 3.0),
)
_ALERT_WEIGHTS = cumulative(kind[2] for kind in ALERT_TYPES)
TRAFFIC = (
    0.1,
    0.05,
    0.03,
    0.03,
    0.05,
    0.15,
    0.5,
    0.95,
    1.0,
    0.7,
    0.5,
    0.5,
    0.55,
    0.5,
    0.5,
    0.6,
    0.85,
    1.0,
    0.95,
    0.6,
    0.4,
    0.3,
    0.2,
    0.15,
)


class NavigationSimulator:
    """Endless jam and alert reports of a seeded user pool; see the module docstring."""

    contract_id: str = CONTRACT_ID
    streams: tuple[str, ...] = ("jams", "alerts")
    time_fields: ClassVar[dict[str, tuple[str, ...]]] = {
        "jams": ("timestamp",),
        "alerts": ("timestamp",),
    }
    position_fields: ClassVar[dict[str, tuple[tuple[str, str], ...]]] = {
        "jams": (("lat", "lon"),),
        "alerts": (("lat", "lon"),),
    }

    def __init__(self, options: SimOptions | None = None) -> None:
        self.options = options or SimOptions()
        self._rng = seeded_random(self.options.seed)
        self._disorder = BoundedDisorder(seeded_random(self.options.seed + 1), MAX_DISORDER_MS)
        size = self.options.size or DEFAULT_REPORTERS
        self.reporters = [seeded_uuid(self._rng) for _ in range(size)]
        self._reporter_weights = cumulative(1.0 / (rank + 1) ** 0.8 for rank in range(size))

    def records(self) -> Iterator[SimRecord]:
        """Reports in time order, with a little disorder across reporters.

        Every call starts over from the seed, so two calls give the same records.
        """
        return type(self)(self.options)._run()

    def _run(self) -> Iterator[SimRecord]:
        clock = self.options.start_ms
        while True:
            rate = PEAK_REPORTS_PER_MIN * TRAFFIC[int(local_hour(clock))] / MINUTE_MS
            clock += 1 + int(self._rng.expovariate(rate))
            reporter = self.reporters[weighted_index(self._rng, self._reporter_weights)]
            item = (
                self._jam(reporter, clock)
                if self._rng.random() < JAM_SHARE
                else self._alert(reporter, clock)
            )
            self._disorder.push(clock, reporter, item)
            yield from self._disorder.release(clock)

    def _jam(self, reporter: str, time_ms: int) -> SimRecord:
        rng = self._rng
        road = ROADS[weighted_index(rng, _ROAD_WEIGHTS)]
        street, road_type, free_kmh = road[0], road[1], road[2]
        level = weighted_index(rng, _LEVEL_WEIGHTS) + 1
        speed = free_kmh * LEVEL_SPEED[level] * rng.uniform(0.85, 1.15)
        length = rng.uniform(200.0, 6000.0 if road_type == 3 else 1500.0)
        # The delay is the extra travel time over the jam; a standstill counts as 2 km/h.
        delay = length / (max(speed, 2.0) / 3.6) - length / (free_kmh / 3.6)
        lat, lon = self._on_road(road)
        record: dict[str, Any] = {
            "event_id": seeded_uuid(rng),
            "reporter_id": reporter,
            "timestamp": time_ms,
            "lat": lat,
            "lon": lon,
            "street": street,
            "road_type": road_type,
            "length_m": round(length, 1),
            "delay_s": round(delay, 1),
            "speed_kmh": round(speed, 1),
            "level": level,
        }
        return SimRecord("jams", record)

    def _alert(self, reporter: str, time_ms: int) -> SimRecord:
        rng = self._rng
        road = ROADS[weighted_index(rng, _ROAD_WEIGHTS)]
        kind, subtypes, _ = ALERT_TYPES[weighted_index(rng, _ALERT_WEIGHTS)]
        lat, lon = self._on_road(road)
        record: dict[str, Any] = {
            "event_id": seeded_uuid(rng),
            "reporter_id": reporter,
            "timestamp": time_ms,
            "lat": lat,
            "lon": lon,
            "type": kind,
            "subtype": subtypes[rng.randrange(len(subtypes))],
            "street": road[0] if rng.random() < 0.9 else None,
            "reliability": min(10, max(0, int(rng.gauss(6.0, 2.0)))),
        }
        return SimRecord("alerts", record)

    def _on_road(self, road: tuple[Any, ...]) -> tuple[float, float]:
        (lat1, lon1), (lat2, lon2) = road[4], road[5]
        share = self._rng.random()
        lat, lon = lat1 + share * (lat2 - lat1), lon1 + share * (lon2 - lon1)
        # GPS noise of a few metres, as reported by phones.
        lat, lon = offset_m(lat, lon, self._rng.gauss(0, 8.0), self._rng.gauss(0, 8.0))
        return round(lat, 6), round(lon, 6)


def waze_feed(records: Sequence[SimRecord], *, start_ms: int, end_ms: int) -> dict[str, Any]:
    """A Waze for Cities style document (``alerts``, ``jams``) holding the given reports.

    The feed has no user ids (Waze aggregates them away); jams get a two-point ``line`` that
    starts at the head of the jam.
    """
    alerts, jams = [], []
    for stream, record in records:
        point = {"x": record["lon"], "y": record["lat"]}
        if stream == "alerts":
            alerts.append(
                {
                    "uuid": record["event_id"],
                    "pubMillis": record["timestamp"],
                    "location": point,
                    "type": record["type"],
                    "subtype": record["subtype"] or "",
                    "street": record["street"],
                    "city": "Bordeaux",
                    "country": "FR",
                    "reliability": record["reliability"],
                    "confidence": 1,
                    "roadType": 2,
                }
            )
        else:
            tail_lat, tail_lon = offset_m(record["lat"], record["lon"], -record["length_m"], 0)
            jams.append(
                {
                    "uuid": record["event_id"],
                    "pubMillis": record["timestamp"],
                    "line": [point, {"x": round(tail_lon, 6), "y": round(tail_lat, 6)}],
                    "speedKMH": record["speed_kmh"],
                    "speed": round(record["speed_kmh"] / 3.6, 2),
                    "length": int(record["length_m"]),
                    "delay": int(record["delay_s"]),
                    "level": record["level"],
                    "roadType": record["road_type"],
                    "street": record["street"],
                    "city": "Bordeaux",
                    "country": "FR",
                    "type": "NONE",
                }
            )
    return {"startTimeMillis": start_ms, "endTimeMillis": end_ms, "alerts": alerts, "jams": jams}
