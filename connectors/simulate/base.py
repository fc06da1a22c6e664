"""What every simulator shares: options, seeded ids, bounded disorder and small geodesy.

A simulator is an infinite, deterministic iterator of ``SimRecord(stream, record)``: the same
seed and start give the same records, byte for byte. Records are plain dicts that match the
stream's Avro schema exactly (times are ``int`` milliseconds UTC).
"""

from __future__ import annotations

import bisect
import heapq
import itertools
import math
import random
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, ClassVar, NamedTuple, Protocol

# A fixed default start keeps tests deterministic: 2026-06-01T06:00:00Z.
DEFAULT_START_MS = 1_780_293_600_000
MINUTE_MS = 60_000
HOUR_MS = 60 * MINUTE_MS
DAY_MS = 24 * HOUR_MS
EARTH_RADIUS_M = 6_371_000.0


class SimRecord(NamedTuple):
    """One generated record and the contract stream it belongs to."""

    stream: str
    record: dict[str, Any]


@dataclass(frozen=True)
class SimOptions:
    """Seed, start time (ms UTC) and population size (vehicles, listings, reporters)."""

    seed: int = 0
    start_ms: int = DEFAULT_START_MS
    size: int | None = None


class Simulator(Protocol):
    """An endless, seeded source of records for one example contract."""

    contract_id: str
    streams: tuple[str, ...]
    time_fields: ClassVar[dict[str, tuple[str, ...]]]
    """Per stream, the fields holding times (ms): they move together (``place.retimed``)."""
    position_fields: ClassVar[dict[str, tuple[tuple[str, str], ...]]]
    """Per stream, the ``(lat, lon)`` field pairs (``place.relocated``)."""

    def records(self) -> Iterator[SimRecord]:
        """Records in emission order (bounded disorder across subjects)."""
        ...


def take(
    records: Iterable[SimRecord], events: int, streams: Iterable[str] | None = None
) -> Iterator[SimRecord]:
    """The first ``events`` records, counting only the given streams (all when None)."""
    wanted = None if streams is None else frozenset(streams)
    selected = (r for r in records if wanted is None or r.stream in wanted)
    return itertools.islice(selected, events)


def parse_start(text: str) -> int:
    """An ISO 8601 time with a timezone (``2026-06-01T06:00:00Z``) as ms since the epoch."""
    moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    if moment.tzinfo is None:
        msg = "the start time needs a timezone, e.g. 2026-06-01T06:00:00Z"
        raise ValueError(msg)
    return int(moment.timestamp() * 1000)


def format_ms(ms: int) -> str:
    """Milliseconds since the epoch as an ISO 8601 UTC string (for messages)."""
    return datetime.fromtimestamp(ms / 1000, tz=UTC).isoformat().replace("+00:00", "Z")


def seeded_random(seed: int) -> random.Random:
    """The generator of a simulation: reproducible by design, never used for secrets."""
    return random.Random(seed)  # noqa: S311 - determinism is the point here


def seeded_uuid(rng: random.Random) -> str:
    """A version-4 UUID drawn from ``rng``, so ids are reproducible from the seed.

    Formatted by hand: ``str(uuid.UUID(...))`` costs three times as much, and simulators
    draw one per record.
    """
    h = f"{rng.getrandbits(128):032x}"
    variant = "89ab"[int(h[16], 16) & 3]
    return f"{h[:8]}-{h[8:12]}-4{h[13:16]}-{variant}{h[17:20]}-{h[20:]}"


def weighted_index(rng: random.Random, cumulative: list[float]) -> int:
    """Index drawn with probabilities given as a cumulative weight list."""
    return min(bisect.bisect_right(cumulative, rng.random() * cumulative[-1]), len(cumulative) - 1)


def cumulative(weights: Iterable[float]) -> list[float]:
    """Running sums of weights, for ``weighted_index``."""
    return list(itertools.accumulate(weights))


def offset_m(lat: float, lon: float, north_m: float, east_m: float) -> tuple[float, float]:
    """The point ``north_m`` metres north and ``east_m`` east (equirectangular, city scale)."""
    dlat = math.degrees(north_m / EARTH_RADIUS_M)
    dlon = math.degrees(east_m / (EARTH_RADIUS_M * math.cos(math.radians(lat))))
    return lat + dlat, lon + dlon


def distance_m(lat1: float, lon1: float, lat2: float, lon2: float) -> tuple[float, float]:
    """North and east distances in metres between two nearby points (signed)."""
    north = math.radians(lat2 - lat1) * EARTH_RADIUS_M
    east = math.radians(lon2 - lon1) * EARTH_RADIUS_M * math.cos(math.radians(lat1))
    return north, east


def local_hour(ms: int, utc_offset_h: int = 2) -> float:
    """Hour of day (0..24) in the territory's summer time; drives demand profiles."""
    return ((ms / HOUR_MS) + utc_offset_h) % 24.0


class BoundedDisorder:
    """Re-order records a little, as a real network does, within ``max_delay_ms``.

    Each record gets an emission key ``max(time + jitter, previous key of its subject)``: keys
    stay within ``[time, time + max_delay_ms]`` and never decrease per subject, so every
    subject's records keep their order while records of different subjects interleave. Two
    records emitted in a row are at most ``max_delay_ms`` out of event-time order. Records
    must be pushed with the simulation clock never going back (``push(clock, ...)``).
    """

    def __init__(self, rng: random.Random, max_delay_ms: int) -> None:
        self._rng = rng
        self._max_delay = max_delay_ms
        self._mean = max(1.0, max_delay_ms / 6)
        self._heap: list[tuple[int, int, SimRecord]] = []
        self._last_key: dict[Any, int] = {}
        self._seq = itertools.count()

    def push(self, time_ms: int, subject: Any, item: SimRecord) -> None:
        """Add a record whose event time is ``time_ms`` (not earlier than the clock)."""
        jitter = min(int(self._rng.expovariate(1.0 / self._mean)), self._max_delay)
        key = max(time_ms + jitter, self._last_key.get(subject, 0))
        self._last_key[subject] = key
        heapq.heappush(self._heap, (key, next(self._seq), item))

    def release(self, clock_ms: int) -> Iterator[SimRecord]:
        """Records whose key is due: every later push has an event time >= ``clock_ms``."""
        heap = self._heap
        while heap and heap[0][0] <= clock_ms:
            yield heapq.heappop(heap)[2]

    def forget(self, subject: Any) -> None:
        """Drop a subject's last key (it will not be pushed again), to bound memory."""
        self._last_key.pop(subject, None)
