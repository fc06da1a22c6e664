"""Polling loops of the pull connectors: fetch (injected), parse (pure), emit, wait.

Each poller has ``poll_once() -> seconds to wait`` and is run by ``connectors.poll.run_polls``
with an injected clock. Records go through an ``Emitter`` (validator, then raw or DLQ), which
is flushed, so Kafka acknowledged them, before a poller moves its position on.

* ``GbfsPoller`` waits ``max(ttl, min_interval)`` between polls, as the feed's ``ttl`` asks.
* ``MdsPoller`` pulls pages (``links.next``) with a bearer token and saves a checkpoint file
  (next page URL, or the time up to which everything was read) after each page, so a
  restart resumes where it stopped; re-reading a page is harmless (event ids repeat).
* ``WazePoller`` emits reports it has not seen in the previous poll.

DLQ ``source`` headers name the connector and a position (poll, page, item index), never a
feed URL (it may hold a secret) nor an item value.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry, Counter

from broker.metrics import metrics_for
from connectors import gbfs, mds, waze
from connectors.base import ConnectorError
from connectors.emit import Emitter
from connectors.poll import Clock, Fetch, HttpResponse, get_json
from connectors.retry import status_error

HOUR_MS = 3_600_000


def rotation_counter(registry: CollectorRegistry) -> Counter:
    """``respublica_gbfs_id_rotation_violations_total{contract, source}``."""
    return metrics_for(registry).gbfs_id_rotation_violations


@dataclass(frozen=True)
class GbfsSettings:
    """One GBFS system: where, as whom, and how often at most."""

    feed_url: str  # gbfs.json (discovery), or the vehicle_status / free_bike_status URL
    provider_id: str
    source: str = "gbfs"  # the metric label and DLQ source prefix: a name of ours
    stream: str = "vehicle_events"
    min_interval_s: float = 10.0
    same_place_m: float = gbfs.SAME_PLACE_M


@dataclass
class GbfsStats:
    """Totals since the poller started."""

    polls: int = 0
    emitted: int = 0
    violations: int = 0
    stations: int = 0


class GbfsPoller:
    """Availability events and rotation violations from a GBFS v2.3 or v3 system."""

    def __init__(
        self, settings: GbfsSettings, fetch: Fetch, emitter: Emitter, violations: Counter
    ) -> None:
        self.settings = settings
        self.fetch = fetch
        self.emitter = emitter
        self.violations = violations
        violations.labels(emitter.contract_id, settings.source)  # 0 until a poll finds one
        self.stats = GbfsStats()
        self.rotation = gbfs.RotationTracker(settings.same_place_m)
        self._feeds: dict[str, str] | None = None
        self._availability: gbfs.AvailabilityTracker | None = None

    async def poll_once(self) -> float:
        """Read the vehicle feed (and stations, if any); returns seconds until the next poll."""
        feeds = await self._discover()
        tracker = await self._tracker(feeds)
        snapshot = gbfs.parse_vehicle_feed(
            await get_json(self.fetch, feeds["vehicles"], "vehicle feed")
        )
        self.stats.polls += 1
        found = self.rotation.observe(snapshot)
        self.stats.violations += found
        self.violations.labels(self.emitter.contract_id, self.settings.source).inc(found)
        for index, record in enumerate(tracker.changes(snapshot)):
            source = f"{self.settings.source}:poll={self.stats.polls}#{index}"
            self.emitter.emit(self.settings.stream, record, source)
            self.stats.emitted += 1
        self.emitter.flush()
        if "stations" in feeds:
            _, stations = gbfs.parse_station_status(
                await get_json(self.fetch, feeds["stations"], "station_status")
            )
            self.stats.stations = len(stations)
        return max(float(snapshot.ttl_s), self.settings.min_interval_s)

    async def _discover(self) -> dict[str, str]:
        if self._feeds is None:
            url = self.settings.feed_url
            if url.rstrip("/").endswith("gbfs.json"):
                named = gbfs.discover_feeds(await get_json(self.fetch, url, "gbfs.json"))
                vehicles = named.get("vehicle_status") or named.get("free_bike_status")
                if vehicles is None:
                    msg = "gbfs.json lists no vehicle_status or free_bike_status feed"
                    raise ConnectorError(msg)
                self._feeds = {"vehicles": vehicles}
                self._feeds.update(
                    {
                        key: named[name]
                        for key, name in (
                            ("types", "vehicle_types"),
                            ("stations", "station_status"),
                        )
                        if name in named
                    }
                )
            else:
                self._feeds = {"vehicles": url}
        return self._feeds

    async def _tracker(self, feeds: dict[str, str]) -> gbfs.AvailabilityTracker:
        if self._availability is None:
            types = (
                gbfs.parse_vehicle_types(
                    await get_json(self.fetch, feeds["types"], "vehicle_types")
                )
                if "types" in feeds
                else {}
            )
            self._availability = gbfs.AvailabilityTracker(
                self.settings.provider_id, self.settings.source, types, self.settings.same_place_m
            )
        return self._availability


@dataclass(frozen=True)
class MdsEndpoint:
    """One MDS endpoint to pull: its path, query style and the stream it feeds."""

    name: str  # checkpoint key
    path: str  # "/events/recent", "/status_changes", "/trips"
    stream: str  # "vehicle_events" or "trips"
    style: str = "range"  # "range": start/end ms params; "hour": end_time=YYYY-MM-DDTHH
    params: tuple[str, str] = ("start_time", "end_time")


MDS_2_0 = (
    MdsEndpoint("events", "/events/recent", "vehicle_events"),
    MdsEndpoint("trips", "/trips", "trips", style="hour"),
)
MDS_1_X = (
    MdsEndpoint("status_changes", "/status_changes", "vehicle_events"),
    MdsEndpoint("trips", "/trips", "trips", params=("min_end_time", "max_end_time")),
)


@dataclass(frozen=True)
class MdsSettings:
    """An MDS Provider API: base URL, token, endpoints, checkpoint, first time to read."""

    base_url: str
    token: str = field(repr=False)
    checkpoint: Path
    since_ms: int
    endpoints: tuple[MdsEndpoint, ...] = MDS_2_0
    version: str = "2.0"
    lag_ms: int = 60_000  # do not ask for the last minute: providers are still writing it
    interval_s: float = 60.0
    defaults: mds.VehicleDefaults = mds.VehicleDefaults()


class MdsPoller:
    """Incremental, resumable pulls of an MDS Provider API."""

    def __init__(self, settings: MdsSettings, fetch: Fetch, clock: Clock, emitter: Emitter) -> None:
        self.settings = settings
        self.fetch = fetch
        self.clock = clock
        self.emitter = emitter
        self.pages = 0
        self.state: dict[str, dict[str, Any]] = _load_checkpoint(settings.checkpoint)

    async def poll_once(self) -> float:
        """Read every endpoint up to now; returns seconds until the next poll."""
        for endpoint in self.settings.endpoints:
            await self._pull(endpoint)
        return self.settings.interval_s

    def read_up_to(self) -> dict[str, int]:
        """Per endpoint, the time (ms) before which everything is read and in Kafka, as in the
        checkpoint: where a restart resumes."""
        return {
            e.name: int(self.state.get(e.name, {}).get("since_ms", self.settings.since_ms))
            for e in self.settings.endpoints
        }

    async def _pull(self, endpoint: MdsEndpoint) -> None:
        state = self.state.setdefault(
            endpoint.name, {"since_ms": self.settings.since_ms, "next_url": None, "until_ms": None}
        )
        # Catch up query after query (hour after hour) until the endpoint is up to date.
        while (url := state["next_url"] or self._query(endpoint, state)) is not None:
            while url:
                response = await self.fetch(url, self._headers())
                if response.status == 202:  # MDS: the hour is not ready; try again later
                    return
                url = self._page(endpoint, self._document(endpoint, response), state)

    @staticmethod
    def _document(endpoint: MdsEndpoint, response: HttpResponse) -> Any:
        if response.status == 404 and endpoint.style == "hour":
            return {"trips": []}  # MDS: no operations in that hour
        what = f"MDS {endpoint.name}"
        if response.status != 200:
            raise status_error(what, response.status, response.retry_after)
        return response.json(what)

    def _query(self, endpoint: MdsEndpoint, state: dict[str, Any]) -> str | None:
        since = int(state["since_ms"])
        until = self.clock.now_ms() - self.settings.lag_ms
        if endpoint.style == "hour":
            since -= since % HOUR_MS
            if since + HOUR_MS > until:
                return None  # the hour is not over yet
            state.update(since_ms=since, until_ms=since + HOUR_MS)
            return f"{self._base()}{endpoint.path}?end_time={mds.hour_param(since)}"
        if until <= since:
            return None
        state["until_ms"] = until
        start, end = endpoint.params
        return f"{self._base()}{endpoint.path}?{start}={since}&{end}={until}"

    def _page(self, endpoint: MdsEndpoint, doc: Any, state: dict[str, Any]) -> str | None:
        key, legacy = (
            ("trips", "trips") if endpoint.stream == "trips" else ("events", "status_changes")
        )
        page = mds.page(doc, key, legacy)
        self.pages += 1
        to_record = mds.trip_record if endpoint.stream == "trips" else mds.event_record
        for index, item in enumerate(page.items):
            source = f"mds:{endpoint.name}:page={self.pages}#{index}"
            self.emitter.emit(endpoint.stream, to_record(item, self.settings.defaults), source)
        self.emitter.flush()  # acknowledged before the checkpoint moves past this page
        state["next_url"] = page.next_url
        if page.next_url is None:
            state["since_ms"] = state["until_ms"]
        _save_checkpoint(self.settings.checkpoint, self.state)
        return page.next_url

    def _headers(self) -> dict[str, str]:
        return {
            "Authorization": f"Bearer {self.settings.token}",
            "Accept": f"application/vnd.mds+json;version={self.settings.version}",
        }

    def _base(self) -> str:
        return self.settings.base_url.rstrip("/")


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


@dataclass(frozen=True)
class WazeSettings:
    """A Waze for Cities style feed URL (secret: never logged) and the poll interval."""

    feed_url: str = field(repr=False)
    interval_s: float = 120.0


class WazePoller:
    """Jam and alert reports of a navigation feed, each emitted once."""

    def __init__(self, settings: WazeSettings, fetch: Fetch, emitter: Emitter) -> None:
        self.settings = settings
        self.fetch = fetch
        self.emitter = emitter
        self.tracker = waze.ReportTracker()
        self.polls = 0

    async def poll_once(self) -> float:
        """Read the feed, emit new reports; returns seconds until the next poll."""
        doc = await get_json(self.fetch, self.settings.feed_url, "Waze feed")
        self.polls += 1
        for report in self.tracker.new(list(waze.parse_feed(doc))):
            source = f"waze:poll={self.polls}#{report.stream}[{report.index}]"
            if report.rejected is not None:
                self.emitter.reject(report.stream, report.record, report.rejected, source)
            else:
                self.emitter.emit(report.stream, report.record, source)
        self.emitter.flush()
        return self.settings.interval_s
