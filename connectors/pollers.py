"""Polling loops of the GBFS and Waze pull connectors: fetch (injected), parse (pure), deliver.

Each poller has ``poll_once() -> seconds to wait`` and is run by ``connectors.poll.run_polls``
with an injected clock. Records go through an ``Outbox`` (validator, then raw or DLQ), and a
poller waits for ``Outbox.deliver`` (Kafka acknowledged them) before it moves its position
on; the MDS Provider poller is ``connectors.mds_poller``.

* ``GbfsPoller`` finds what its URL is by its content (a ``gbfs.json`` discovery document,
  v2.3 or v3, or the vehicle feed itself), re-reads discovery and ``vehicle_types`` when
  their ``ttl`` runs out, and waits ``max(ttl, min_interval)`` between polls. A vehicle's
  state is observed at the feed's ``last_updated`` (a status is a snapshot), and a vehicle
  counts as sent only once its record is in Kafka and was not refused as too late; a record
  refused as too late is tried again from a snapshot with a newer ``last_updated`` only.
* ``WazePoller`` emits reports it has not seen in the previous poll.

DLQ ``source`` headers name the connector and a position (poll, item index), never a feed
URL (it may hold a secret) nor an item value.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from prometheus_client import CollectorRegistry, Counter

from broker.kafka.reasons import Reason
from broker.metrics import metrics_for
from connectors import gbfs, waze
from connectors.base import Rejected
from connectors.outbox import Outbox
from connectors.poll import Clock, Fetch, get_json


def rotation_counter(registry: CollectorRegistry) -> Counter:
    """``respublica_gbfs_id_rotation_violations_total{contract, source}``."""
    return metrics_for(registry).gbfs_id_rotation_violations


@dataclass(frozen=True)
class GbfsSettings:
    """One GBFS system: where, as whom, and how often at most."""

    feed_url: str  # gbfs.json (discovery) or the vehicle feed, recognised by content
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
    discoveries: int = 0  # reads of gbfs.json
    type_reads: int = 0  # reads of vehicle_types


@dataclass
class _Cached:
    """A document-derived value and when (ms, by its ttl) it must be read again."""

    value: Any
    expires_ms: int


class GbfsPoller:
    """Availability events and rotation violations from a GBFS v2.3 or v3 system."""

    def __init__(
        self,
        settings: GbfsSettings,
        fetch: Fetch,
        clock: Clock,
        outbox: Outbox,
        violations: Counter,
    ) -> None:
        self.settings = settings
        self.fetch = fetch
        self.clock = clock
        self.outbox = outbox
        self.violations = violations
        violations.labels(outbox.contract_id, settings.source)  # 0 until a poll finds one
        self.stats = GbfsStats()
        self.rotation = gbfs.RotationTracker(settings.same_place_m)
        self.availability = gbfs.AvailabilityTracker(
            settings.provider_id, settings.source, same_place_m=settings.same_place_m
        )
        self._feeds: _Cached | None = None  # value: gbfs.Feeds
        self._types: _Cached | None = None  # value: vehicle_type_id -> (type, propulsion)

    async def poll_once(self) -> float:
        """Read the vehicle feed (and stations, if any); returns seconds until the next poll."""
        now = self.clock.now_ms()
        feeds, document = await self._discover(now)
        self.availability.types = await self._vehicle_types(feeds, now)
        if document is None:
            document = await get_json(self.fetch, feeds.vehicles, "vehicle feed")
        snapshot = gbfs.parse_vehicle_feed(document)
        self.stats.polls += 1
        found = self.rotation.observe(snapshot)
        self.stats.violations += found
        self.violations.labels(self.outbox.contract_id, self.settings.source).inc(found)
        changes = self.availability.changes(snapshot)
        sent, too_late = [], []
        for index, (vehicle, record) in enumerate(changes):
            source = f"{self.settings.source}:poll={self.stats.polls}#{index}"
            outcome = self.outbox.emit(self.settings.stream, record, source)
            # A stale snapshot's records are refused as too late: try them again from a
            # fresher snapshot (not from this one again: that only fills the DLQ).
            if isinstance(outcome, Rejected) and outcome.reason is Reason.TOO_LATE:
                too_late.append(vehicle)
            else:
                sent.append(vehicle)
        await self.outbox.deliver()  # in Kafka before the tracker counts them as sent
        self.availability.commit(snapshot, sent, too_late)
        self.stats.emitted += len(changes)
        if feeds.stations is not None:
            _, stations = gbfs.parse_station_status(
                await get_json(self.fetch, feeds.stations, "station_status")
            )
            self.stats.stations = len(stations)
        return max(float(snapshot.ttl_s), self.settings.min_interval_s)

    async def _discover(self, now: int) -> tuple[gbfs.Feeds, Any]:
        """The system's feeds, and the vehicle feed's document when the URL was that feed."""
        if self._feeds is not None and now < self._feeds.expires_ms:
            feeds: gbfs.Feeds = self._feeds.value
            return feeds, None
        url = self.settings.feed_url
        document = await get_json(self.fetch, url, "GBFS feed")
        if gbfs.is_vehicle_feed(document):
            # The vehicle feed itself: it stays what the URL is, so no need to look again.
            self._feeds = _Cached(gbfs.Feeds(vehicles=url), expires_ms=2**62)
            return self._feeds.value, document
        self.stats.discoveries += 1
        found = gbfs.feeds_of(gbfs.discover_feeds(document))
        self._feeds = _Cached(found, now + gbfs.ttl_ms(document))
        return found, None

    async def _vehicle_types(self, feeds: gbfs.Feeds, now: int) -> dict[str, tuple[str, str]]:
        if feeds.types is None:
            return {}
        if self._types is None or now >= self._types.expires_ms:
            document = await get_json(self.fetch, feeds.types, "vehicle_types")
            self.stats.type_reads += 1
            self._types = _Cached(gbfs.parse_vehicle_types(document), now + gbfs.ttl_ms(document))
        types: dict[str, tuple[str, str]] = self._types.value
        return types


@dataclass(frozen=True)
class WazeSettings:
    """A Waze for Cities style feed URL (secret: never logged) and the poll interval."""

    feed_url: str = field(repr=False)
    interval_s: float = 120.0


class WazePoller:
    """Jam and alert reports of a navigation feed, each emitted once."""

    def __init__(self, settings: WazeSettings, fetch: Fetch, outbox: Outbox) -> None:
        self.settings = settings
        self.fetch = fetch
        self.outbox = outbox
        self.tracker = waze.ReportTracker()
        self.polls = 0

    async def poll_once(self) -> float:
        """Read the feed, emit new reports; returns seconds until the next poll."""
        doc = await get_json(self.fetch, self.settings.feed_url, "Waze feed")
        self.polls += 1
        for report in self.tracker.new(list(waze.parse_feed(doc))):
            source = f"waze:poll={self.polls}#{report.stream}[{report.index}]"
            if report.rejected is not None:
                self.outbox.reject(report.stream, report.record, report.rejected, source)
            else:
                self.outbox.emit(report.stream, report.record, source)
        await self.outbox.deliver()
        return self.settings.interval_s
