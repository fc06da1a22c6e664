"""Pull an MDS Provider 2.0 API: events in aligned windows, trips by the hour, vehicles.

One ``poll_once`` fixes its horizon (now minus ``lag_ms``) when it starts, so a catch-up
is finite however long it takes, then reads (MDS 2.0.2 ``provider/README.md``):

* ``/events/recent?start_time=&end_time=`` in windows on a grid of ``interval_s`` (at most
  ``window_max_ms`` long), from the checkpoint up to the last whole step before the
  horizon: a catch-up of a day is 24 requests (plus pages), steady polling one a step;
* ``/trips?end_time=YYYY-MM-DDTHH`` for every hour that is over; ``202 Accepted`` (the hour
  is not processed yet) leaves that hour for the next poll, ``404`` is an hour without
  operations;
* ``/vehicles`` (every ``vehicles_ttl_s``) and ``/vehicles/{device_id}`` for a device it has
  not seen: the vehicle type and propulsion that 2.0 events and trips do not carry. A 4xx
  answer to a device lookup makes it an unknown device (counted, never logged by id).

Pages are followed through ``links.next``, on the base URL's origin only (scheme, host and
port: the bearer token goes nowhere else), never back to a page read in the same poll, and
at most ``max_pages_per_poll`` of them per poll; a provider breaking any of these is a
``ConnectorError``. Each page is validated, delivered to Kafka
(``Outbox.deliver``, which waits out a Kafka outage) and only then is the checkpoint file
moved past it, so a restart resumes where it stopped; re-reading a page is harmless (event
ids repeat). Every request asks ``Accept: application/vnd.mds+json;version=2.0``.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote, urljoin, urlsplit

from connectors import mds
from connectors.base import ConnectorError
from connectors.outbox import Outbox
from connectors.poll import Clock, Fetch, HttpResponse
from connectors.retry import status_error

HOUR_MS = 3_600_000
RECENT_MAX_AGE_MS = 14 * 24 * HOUR_MS  # /events/recent serves two weeks (400 beyond)
MAX_PAGES_PER_POLL = 10_000  # links.next followed per poll: a chain that never ends stops
_DEFAULT_PORTS = {"http": 80, "https": 443}
_log = logging.getLogger(__name__)


@dataclass(frozen=True)
class MdsSettings:
    """An MDS Provider 2.0 API: base URL, token, checkpoint, first time to read, cadence."""

    base_url: str
    token: str = field(repr=False)
    checkpoint: Path
    since_ms: int
    interval_s: float = 60.0  # the polling cadence and the events window grid
    lag_ms: int = 60_000  # do not ask for the last minute: providers are still writing it
    window_max_ms: int = HOUR_MS
    vehicles_ttl_s: float = 3600.0
    trips: bool = True
    max_pages_per_poll: int = MAX_PAGES_PER_POLL


@dataclass
class MdsStats:
    """Totals since the poller started."""

    requests: int = 0
    pages: int = 0
    events: int = 0
    trips: int = 0
    trips_not_ready: int = 0  # 202 answers
    vehicles: int = 0
    unknown_devices: int = 0  # /vehicles/{device_id} answered 4xx other than 404


class MdsPoller:
    """Incremental, resumable pulls of an MDS Provider 2.0 API (see the module docstring)."""

    def __init__(self, settings: MdsSettings, fetch: Fetch, clock: Clock, outbox: Outbox) -> None:
        if settings.interval_s < 1 or settings.window_max_ms < settings.interval_s * 1000:
            msg = "MDS: the interval must be at least 1 s and at most the longest window"
            raise ConnectorError(msg)
        origin = _origin(settings.base_url)
        if origin is None:
            msg = "MDS: the base URL must be an http:// or https:// URL with a host"
            raise ConnectorError(msg)
        self.settings = settings
        self.fetch = fetch
        self.clock = clock
        self.outbox = outbox
        self.stats = MdsStats()
        self._origin = origin
        self._visited: set[str] = set()  # pages read in this poll
        self._followed = 0  # links.next followed in this poll
        self.state: dict[str, dict[str, Any]] = _load_checkpoint(settings.checkpoint)
        self._vehicles: dict[str, mds.VehicleInfo | None] = {}
        self._vehicles_at: int | None = None

    async def poll_once(self) -> float:
        """Read everything up to the horizon fixed now; returns seconds until the next poll."""
        now = self.clock.now_ms()
        horizon = now - self.settings.lag_ms
        self._visited, self._followed = set(), 0
        unknown = self.stats.unknown_devices
        try:
            await self._refresh_vehicles(now)
            await self._events(horizon, now)
            if self.settings.trips:
                await self._trips(horizon)
        finally:
            if self.stats.unknown_devices > unknown:
                _log.warning(
                    "MDS: %d device lookups answered 4xx in this poll; their records lack "
                    "the vehicle type (MISSING_FIELD)",
                    self.stats.unknown_devices - unknown,
                )
        return self.settings.interval_s

    def read_up_to(self) -> dict[str, int]:
        """Per endpoint, the time (ms) before which everything is read and in Kafka, as in the
        checkpoint: where a restart resumes."""
        names = ("events", "trips") if self.settings.trips else ("events",)
        return {
            n: int(self.state.get(n, {}).get("since_ms", self.settings.since_ms)) for n in names
        }

    async def _events(self, horizon: int, now: int) -> None:
        state = self.state.setdefault("events", {"since_ms": self.settings.since_ms})
        step = int(self.settings.interval_s * 1000)
        last = _floor(horizon, step)
        while True:
            url = state.get("next_url")
            if url is None:
                since = int(state["since_ms"])
                until = min(_floor(since + self.settings.window_max_ms, step), last)
                if until <= since:
                    return
                if now - since > RECENT_MAX_AGE_MS:
                    msg = (
                        "MDS events: the position is more than 14 days ago and /events/recent "
                        "serves two weeks; start again with a later --since"
                    )
                    raise ConnectorError(msg)
                state["until_ms"] = until
                url = f"{self._base()}/events/recent?start_time={since}&end_time={until}"
            page = mds.page(await self._get(url, "events"), "events")
            await self._emit("events", page.items)
            self.stats.events += len(page.items)
            state["next_url"] = self._next(url, page.next_url)
            if state["next_url"] is None:
                state["since_ms"] = state.pop("until_ms")
            _save_checkpoint(self.settings.checkpoint, self.state)

    async def _trips(self, horizon: int) -> None:
        start = self.settings.since_ms - self.settings.since_ms % HOUR_MS
        state = self.state.setdefault("trips", {"since_ms": start})
        while (hour := int(state["since_ms"])) + HOUR_MS <= horizon:
            url = f"{self._base()}/trips?end_time={mds.hour_param(hour)}"
            response = await self._request(url)
            if response.status == 202:  # the hour is over but not processed yet
                self.stats.trips_not_ready += 1
                return
            items: Sequence[Mapping[str, Any]] = ()
            if response.status != 404:  # 404: the provider did not operate that hour
                items = mds.page(self._document(response, "trips"), "trips").items
            self.stats.pages += response.status != 404
            await self._emit("trips", items)
            self.stats.trips += len(items)
            state["since_ms"] = hour + HOUR_MS
            _save_checkpoint(self.settings.checkpoint, self.state)

    async def _emit(self, endpoint: str, items: Sequence[Mapping[str, Any]]) -> None:
        stream, to_record = (
            ("trips", mds.trip_record)
            if endpoint == "trips"
            else ("vehicle_events", mds.event_record)
        )
        for index, item in enumerate(items):
            device = item.get("device_id")
            vehicle = await self._vehicle(device) if isinstance(device, str) else None
            source = f"mds:{endpoint}:page={self.stats.pages}#{index}"
            self.outbox.emit(stream, to_record(item, vehicle), source)
        await self.outbox.deliver()  # acknowledged before the checkpoint moves past them

    async def _refresh_vehicles(self, now: int) -> None:
        ttl_ms = self.settings.vehicles_ttl_s * 1000
        if self._vehicles_at is not None and now - self._vehicles_at < ttl_ms:
            return
        catalog: dict[str, mds.VehicleInfo | None] = {}
        url: str | None = f"{self._base()}/vehicles"
        while url is not None:
            page = mds.page(await self._get(url, "vehicles"), "vehicles")
            for vehicle in page.items:
                if isinstance(vehicle.get("device_id"), str):
                    catalog[vehicle["device_id"]] = mds.vehicle_info(vehicle)
            url = self._next(url, page.next_url)
        self._vehicles, self._vehicles_at = catalog, now
        self.stats.vehicles = len(catalog)

    async def _vehicle(self, device_id: str) -> mds.VehicleInfo | None:
        """From the catalogue, else ``/vehicles/{device_id}`` (asked once until a refresh)."""
        if device_id not in self._vehicles:
            url = f"{self._base()}/vehicles/{quote(device_id, safe='')}"
            response = await self._request(url)
            info = None
            # 4xx: an unknown device, whose records lack the type (MISSING_FIELD). Only a
            # count is kept: the device id is the provider's identifier of a vehicle.
            if 400 <= response.status < 500:
                self.stats.unknown_devices += response.status != 404
            else:
                items = mds.page(self._document(response, "vehicles"), "vehicles").items
                info = mds.vehicle_info(items[0]) if items else None
            self._vehicles[device_id] = info
        return self._vehicles[device_id]

    async def _get(self, url: str, what: str) -> Any:
        response = await self._request(url)
        self.stats.pages += 1
        return self._document(response, what)

    async def _request(self, url: str) -> HttpResponse:
        if _origin(url) != self._origin:  # a checkpoint's next_url from another base URL
            raise _foreign_origin()
        self._visited.add(url)
        self.stats.requests += 1
        return await self.fetch(url, self._headers())

    def _next(self, url: str, next_url: str | None) -> str | None:
        """The absolute next page URL, if the provider's link is one the token may follow."""
        if next_url is None:
            return None
        absolute = urljoin(url, next_url)
        if _origin(absolute) != self._origin:
            raise _foreign_origin()
        if absolute in self._visited:
            msg = "MDS: links.next points back at a page already read in this poll (a loop)"
            raise ConnectorError(msg)
        self._followed += 1
        if self._followed > self.settings.max_pages_per_poll:
            msg = (
                f"MDS: more than {self.settings.max_pages_per_poll} pages followed through "
                "links.next in one poll; the provider's pagination does not end"
            )
            raise ConnectorError(msg)
        return absolute

    @staticmethod
    def _document(response: HttpResponse, what: str) -> Any:
        if response.status == 406:
            msg = f"MDS {what}: HTTP 406, the provider does not serve MDS {mds.VERSION}"
            raise ConnectorError(msg)
        name = f"MDS {what}"
        if response.status != 200:
            raise status_error(name, response.status, response.retry_after)
        return response.json(name)

    def _headers(self) -> dict[str, str]:
        return {
            "Authorization": f"Bearer {self.settings.token}",
            "Accept": f"{mds.MEDIA_TYPE};version={mds.VERSION}",
        }

    def _base(self) -> str:
        return self.settings.base_url.rstrip("/")


def _floor(ms: int, step: int) -> int:
    return ms - ms % step


def _origin(url: str) -> tuple[str, str, int] | None:
    """``(scheme, host, port)`` of an http(s) URL, default ports made explicit; else None."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:  # a port out of range or not a number
        return None
    scheme = parts.scheme.lower()
    if scheme not in _DEFAULT_PORTS or not parts.hostname:
        return None
    return scheme, parts.hostname, port if port is not None else _DEFAULT_PORTS[scheme]


def _foreign_origin() -> ConnectorError:
    msg = (
        "MDS: links.next points to another scheme, host or port than the base URL; the "
        "bearer token is sent to the base URL's origin only"
    )
    return ConnectorError(msg)


def _load_checkpoint(path: Path) -> dict[str, dict[str, Any]]:
    if not path.exists():
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        msg = f"{path}: unreadable MDS checkpoint; move it away to start over"
        raise ConnectorError(msg) from exc
    return data if isinstance(data, dict) else {}


def _save_checkpoint(path: Path, state: dict[str, dict[str, Any]]) -> None:
    """Write atomically: a crash leaves the old checkpoint or the new one, never half."""
    temporary = path.with_suffix(path.suffix + ".tmp")
    temporary.write_text(json.dumps(state, indent=1, sort_keys=True), encoding="utf-8")
    os.replace(temporary, path)
