"""MDS 2.0 Provider objects (Vehicle, Event, Trip) of the simulated Lyon fleet.

``MdsFleet`` runs ``MobilitySimulator`` and says what a spec-following MDS 2.0 provider
would publish (MDS 2.0.2 ``data-types.md``; micromobility state machine in
``modes/micromobility.md``): each status change becomes an ``Event`` with the state the
vehicle is in after it (``vehicle_state``) and why (``event_types``), each ride a ``Trip``,
each vehicle a ``Vehicle`` with its type and propulsion. Times are integer milliseconds, as
MDS timestamps are. ``advance(until_ms)`` generates everything up to a time, so a local
provider can serve a clock that moves in real time; ``shift_ms`` moves every published time
(a morning rush simulated from ``options.start_ms`` can be served as "the last hours").

Flat simulator event -> MDS 2.0 event (the flat ``available`` that settles a parked vehicle
after ``trip_end`` is no new state in MDS: the ``trip_end`` event already made it available):

==================  ===================  ============================
flat ``event_type``  ``vehicle_state``    ``event_types``
==================  ===================  ============================
available            available            provider_drop_off
reserved             reserved             reservation_start
trip_start           on_trip              trip_start (+ ``trip_ids``)
trip_end             available            trip_end (+ ``trip_ids``)
unavailable          removed              maintenance_pick_up
==================  ===================  ============================
"""

from __future__ import annotations

import bisect
from collections.abc import Iterator
from typing import Any

from connectors.simulate.base import SimOptions, SimRecord
from connectors.simulate.mobility import MAX_DISORDER_MS, PROVIDER_ID, MobilitySimulator

TRANSITIONS = {
    "available": ("available", "provider_drop_off"),
    "reserved": ("reserved", "reservation_start"),
    "trip_start": ("on_trip", "trip_start"),
    "trip_end": ("available", "trip_end"),
    "unavailable": ("removed", "maintenance_pick_up"),
}
PROPULSION_TYPES = {"electric": ["electric"], "electric_assist": ["human", "electric_assist"]}


class MdsFleet:
    """What an MDS 2.0 provider publishes about the simulated fleet, up to a moving time."""

    def __init__(self, options: SimOptions | None = None, shift_ms: int = 0) -> None:
        self.options = options or SimOptions()
        self.shift_ms = shift_ms
        self._records: Iterator[SimRecord] = MobilitySimulator(self.options).records()
        self._held: SimRecord | None = None
        self._last_type: dict[str, str] = {}
        self.vehicles: dict[str, dict[str, Any]] = {}  # device_id -> Vehicle
        self.events: list[dict[str, Any]] = []  # sorted by timestamp
        self.trips: list[dict[str, Any]] = []  # sorted by end_time
        self._event_times: list[int] = []
        self._trip_ends: list[int] = []
        self.generated_to_ms = self.options.start_ms + shift_ms

    def advance(self, until_ms: int) -> None:
        """Generate every event and trip whose time is at most ``until_ms``."""
        # Records come out of order by at most MAX_DISORDER_MS: read a little past the time.
        horizon = until_ms + MAX_DISORDER_MS
        while True:
            record = self._held or next(self._records)
            self._held = None
            time_ms = _time(record) + self.shift_ms
            if time_ms > horizon:
                self._held = record
                break
            self._add(record)
        self.generated_to_ms = max(self.generated_to_ms, until_ms)

    def events_between(self, start_ms: int, end_ms: int) -> list[dict[str, Any]]:
        """Events with ``start_ms <= timestamp < end_ms`` (``/events/recent``)."""
        low = bisect.bisect_left(self._event_times, start_ms)
        high = bisect.bisect_left(self._event_times, end_ms)
        return self.events[low:high]

    def trips_ending_between(self, start_ms: int, end_ms: int) -> list[dict[str, Any]]:
        """Trips with ``start_ms <= end_time < end_ms`` (``/trips?end_time=``)."""
        low = bisect.bisect_left(self._trip_ends, start_ms)
        high = bisect.bisect_left(self._trip_ends, end_ms)
        return self.trips[low:high]

    def _add(self, record: SimRecord) -> None:
        flat = _shifted(record, self.shift_ms)
        self._vehicle(flat)
        if record.stream == "trips":
            trip = trip_object(flat)
            _insort(self.trips, self._trip_ends, trip, trip["end_time"])
            return
        previous = self._last_type.get(flat["vehicle_id"])
        self._last_type[flat["vehicle_id"]] = flat["event_type"]
        if flat["event_type"] == "available" and previous == "trip_end":
            return  # already available since trip_end
        event = event_object(flat)
        _insort(self.events, self._event_times, event, event["timestamp"])

    def _vehicle(self, flat: dict[str, Any]) -> None:
        device = flat["vehicle_id"]
        if device in self.vehicles or "propulsion" not in flat:
            return
        self.vehicles[device] = {
            "device_id": device,
            "provider_id": flat["provider_id"],
            "vehicle_id": f"LYO-{len(self.vehicles) + 1:05d}",
            "vehicle_type": flat["vehicle_type"],
            "propulsion_types": PROPULSION_TYPES.get(flat["propulsion"], [flat["propulsion"]]),
        }


def event_object(flat: dict[str, Any]) -> dict[str, Any]:
    """The MDS 2.0 ``Event`` of a flat simulator event (see the module's table)."""
    state, event_type = TRANSITIONS[flat["event_type"]]
    event: dict[str, Any] = {
        "device_id": flat["vehicle_id"],
        "provider_id": flat["provider_id"],
        "event_id": flat["event_id"],
        "vehicle_state": state,
        "event_types": [event_type],
        "timestamp": flat["timestamp"],
        "location": {"lat": flat["lat"], "lng": flat["lon"]},
    }
    if flat.get("battery_pct") is not None:
        event["battery_percent"] = flat["battery_pct"]
    if event_type in ("trip_start", "trip_end") and flat.get("trip_id"):
        event["trip_ids"] = [flat["trip_id"]]
    return event


def trip_object(flat: dict[str, Any]) -> dict[str, Any]:
    """The MDS 2.0 ``Trip`` of a flat simulator trip (no route: start and end points)."""
    return {
        "provider_id": PROVIDER_ID,
        "device_id": flat["vehicle_id"],
        "trip_id": flat["trip_id"],
        "trip_type": "rider",
        "start_time": flat["start_time"],
        "end_time": flat["end_time"],
        "start_location": {"lat": flat["start_lat"], "lng": flat["start_lon"]},
        "end_location": {"lat": flat["end_lat"], "lng": flat["end_lon"]},
        "duration": int(flat["duration_s"]),
        "distance": round(flat["distance_m"]),
    }


def _time(record: SimRecord) -> int:
    return int(record.record["end_time" if record.stream == "trips" else "timestamp"])


def _shifted(record: SimRecord, shift_ms: int) -> dict[str, Any]:
    times = ("start_time", "end_time") if record.stream == "trips" else ("timestamp",)
    return {**record.record, **{name: record.record[name] + shift_ms for name in times}}


def _insort(items: list[dict[str, Any]], times: list[int], item: dict[str, Any], at: int) -> None:
    index = bisect.bisect_right(times, at)
    times.insert(index, at)
    items.insert(index, item)
