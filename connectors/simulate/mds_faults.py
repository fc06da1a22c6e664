"""Bad MDS 2.0 Agency items, each with the rejection the gateway must give it.

``AgencyFaults(stream, seed).mix(objects, share=...)`` weaves a share of faults into spec-shaped
Events or Trips (``connectors.simulate.mds.MdsFleet``), the way ``faults.FaultInjector`` does
for the contract's own records: each fault is built from the good object before it and says
which ``Reason`` and which field of *our* record (``connectors.mds.EVENT_SOURCES`` names the
MDS field behind it) the validator must answer. Every payload is one JSON value, so a batch
of them is still a JSON array (a malformed element would refuse the whole request).
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, NamedTuple

from broker.kafka.reasons import Reason
from connectors.simulate.base import seeded_random

DAY_MS = 86_400_000
LONDON = {"lat": 51.5072, "lng": -0.1276}  # a valid place outside every example territory


class AgencyFaultKind(StrEnum):
    """A kind of bad Agency item."""

    MISSING_TIME = "missing_time"
    MISSING_LOCATION = "missing_location"
    TIME_IN_SECONDS = "time_in_seconds"
    TIME_IN_FUTURE = "time_in_future"
    OUTSIDE_TERRITORY = "outside_territory"
    LATITUDE_OUT_OF_RANGE = "latitude_out_of_range"
    WRONG_TYPE = "wrong_type"
    UNREGISTERED_DEVICE = "unregistered_device"
    DUPLICATE = "duplicate"
    NOT_AN_OBJECT = "not_an_object"


@dataclass(frozen=True)
class StreamShape:
    """Where an MDS object of a stream keeps its time, its place and a typed number."""

    time: str  # MDS field, same name in our record
    location: str  # MDS field: a GPS object
    lat: str  # our record's fields from ``location``
    lon: str
    number: str  # an MDS integer field...
    number_field: str  # ...and our record's field from it
    event_id: str  # our record's event id field


SHAPES = {
    "vehicle_events": StreamShape(
        "timestamp", "location", "lat", "lon", "battery_percent", "battery_pct", "event_id"
    ),
    "trips": StreamShape(
        "end_time", "end_location", "end_lat", "end_lon", "duration", "duration_s", "event_id"
    ),
}


@dataclass(frozen=True)
class AgencyFault:
    """A bad item and the rejection it must get (reason and field of our record, no value)."""

    kind: AgencyFaultKind
    payload: bytes
    reason: Reason
    field: str


class AgencyItem(NamedTuple):
    """One item of a mixed batch: a good MDS object (``fault`` None) or a fault."""

    payload: bytes
    record: dict[str, Any] | None
    fault: AgencyFault | None


def to_json(value: Any) -> bytes:
    """A JSON value as compact UTF-8 bytes."""
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode()


class AgencyFaults:
    """Builds bad Agency items for one stream (``vehicle_events`` or ``trips``)."""

    def __init__(self, stream: str, *, seed: int = 0) -> None:
        self.shape = SHAPES[stream]
        self._rng = seeded_random(seed)
        self._turn = 0

    def make(self, kind: AgencyFaultKind, item: dict[str, Any]) -> AgencyFault:
        """A fault of ``kind`` made from the good ``item`` (not modified)."""
        shape, bad = self.shape, dict(item)
        if kind is AgencyFaultKind.NOT_AN_OBJECT:
            return AgencyFault(kind, to_json([item.get(shape.time)]), Reason.NOT_AN_OBJECT, "")
        reason, field = self._mutate(kind, bad)
        return AgencyFault(kind, to_json(bad), reason, field)

    def _mutate(self, kind: AgencyFaultKind, bad: dict[str, Any]) -> tuple[Reason, str]:
        shape = self.shape
        if kind is AgencyFaultKind.MISSING_TIME:
            del bad[shape.time]
            return Reason.MISSING_FIELD, shape.time
        if kind is AgencyFaultKind.MISSING_LOCATION:
            del bad[shape.location]
            return Reason.MISSING_FIELD, shape.lat
        if kind is AgencyFaultKind.TIME_IN_SECONDS:
            bad[shape.time] //= 1000
            return Reason.TOO_LATE, shape.time
        if kind is AgencyFaultKind.TIME_IN_FUTURE:
            bad[shape.time] += DAY_MS
            return Reason.EVENT_IN_FUTURE, shape.time
        if kind is AgencyFaultKind.OUTSIDE_TERRITORY:
            bad[shape.location] = dict(LONDON)
            return Reason.OUTSIDE_TERRITORY, f"{shape.lat},{shape.lon}"
        if kind is AgencyFaultKind.LATITUDE_OUT_OF_RANGE:
            bad[shape.location] = {**bad[shape.location], "lat": 123.0}
            return Reason.OUT_OF_RANGE, shape.lat
        if kind is AgencyFaultKind.WRONG_TYPE:
            bad[shape.number] = "many"
            return Reason.WRONG_TYPE, shape.number_field
        if kind is AgencyFaultKind.UNREGISTERED_DEVICE:
            bad["device_id"] = str(uuid.UUID(int=self._rng.getrandbits(128), version=4))
            return Reason.MISSING_FIELD, "vehicle_type"
        # DUPLICATE: the good item again, after it was sent.
        return Reason.DUPLICATE_EVENT, shape.event_id

    def mix(self, items: Iterable[dict[str, Any]], *, share: float) -> Iterator[AgencyItem]:
        """Good items, each followed by a fault with a probability giving ``share`` overall;
        kinds in turn, so every kind appears in a long enough stream."""
        if not 0.0 <= share < 1.0:
            msg = "the bad share must be in [0, 1)"
            raise ValueError(msg)
        kinds = tuple(AgencyFaultKind)
        odds = share / (1.0 - share)
        for item in items:
            yield AgencyItem(to_json(item), item, None)
            if self._rng.random() < odds:
                kind = kinds[self._turn % len(kinds)]
                self._turn += 1
                fault = self.make(kind, item)
                yield AgencyItem(fault.payload, None, fault)
