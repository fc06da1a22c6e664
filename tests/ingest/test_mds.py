"""MDS Provider API: mapping 2.0 and 1.x records, pagination, and resuming after a restart."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from aiohttp import ClientSession, web

from connectors import mds
from connectors.base import ConnectorError
from connectors.emit import Emitter
from connectors.poll import Fetch, HttpResponse, aiohttp_fetch
from connectors.pollers import MdsPoller, MdsSettings
from connectors.validate import H_REASON, Router
from contracts import Contract
from tests.ingest.conftest import NOW_MS, FakeClock, ListSink, data_file, raw_event_ids

DEFAULTS = mds.VehicleDefaults()
EVENTS = json.loads(data_file("mds_2_0_events.json"))["events"]
PAGE = 2


def test_mds_2_0_events_map_to_vehicle_events() -> None:
    records = [mds.event_record(e, DEFAULTS) for e in EVENTS]
    assert [r["event_type"] for r in records] == [
        "available",
        "trip_start",
        "trip_end",
        "reserved",
        "unavailable",
        "maintenance_pick_up",
    ]
    first = records[1]
    assert (first["vehicle_id"], first["lat"], first["lon"], first["battery_pct"]) == (
        EVENTS[1]["device_id"],
        45.7606,
        4.8593,
        95,
    )
    assert first["trip_id"] == EVENTS[1]["trip_ids"][0]
    assert first["event_id"] == EVENTS[1]["event_id"]


def test_mds_1_x_status_changes_map_reasons_and_geojson() -> None:
    doc = json.loads(data_file("mds_1_x_status_changes.json"))
    page = mds.page(doc, "events", "status_changes")
    records = [mds.event_record(i, DEFAULTS) for i in page.items]
    assert page.next_url is None
    assert [(r["event_type"], r["lat"], r["lon"], r["battery_pct"]) for r in records] == [
        ("trip_start", 45.7606, 4.8593, 95),
        ("trip_end", 45.7578, 4.832, 91),
    ]
    again = [mds.event_record(i, DEFAULTS)["event_id"] for i in page.items]
    assert again == [r["event_id"] for r in records]  # derived ids are stable


def test_missing_fields_stay_missing_for_the_validator(examples: dict[str, Contract]) -> None:
    item = {k: v for k, v in EVENTS[0].items() if k != "timestamp"}
    record = mds.event_record(item, DEFAULTS)
    assert "timestamp" not in record
    sink = ListSink()
    emitter = Emitter(
        Router(examples.values()),
        "lyon-micromobility",
        sink=sink,
        connector="mds",
        clock=lambda: NOW_MS,
    )
    outcome = emitter.emit("vehicle_events", record, "t")
    assert getattr(outcome, "field_path", None) == "timestamp"


class ProviderApi:
    """A paginated MDS 2.0 provider on a local test server; can fail once on one page."""

    def __init__(self) -> None:
        self.requests: list[str] = []
        self.fail_at: int | None = None
        self.base = ""

    async def events(self, request: web.Request) -> web.Response:
        self.requests.append(request.path_qs)
        assert request.headers["Authorization"] == "Bearer mds-secret"
        cursor = int(request.query.get("cursor", "0"))
        links = (
            {"next": f"{self.base}/events/recent?cursor={cursor + PAGE}"}
            if cursor + PAGE < len(EVENTS)
            else {}
        )
        return web.json_response(
            {"version": "2.0.0", "events": EVENTS[cursor : cursor + PAGE], "links": links}
        )

    async def trips(self, request: web.Request) -> web.Response:
        self.requests.append(request.path_qs)
        if request.query["end_time"] != "2026-06-01T11":
            raise web.HTTPNotFound()  # MDS: no operations in that hour
        return web.Response(body=data_file("mds_2_0_trips.json"), content_type="application/json")

    def fetch(self, inner: Fetch) -> Fetch:
        async def fetch(url: str, headers: Any) -> HttpResponse:
            if self.fail_at is not None and f"cursor={self.fail_at}" in url:
                self.fail_at = None
                msg = "connection reset (simulated crash)"
                raise ConnectorError(msg)
            return await inner(url, headers)

        return fetch


@pytest.fixture
async def provider(feed_server: Callable[..., Any]) -> ProviderApi:
    api = ProviderApi()
    api.base = await feed_server({"/events/recent": api.events, "/trips": api.trips})
    return api


def settings(api: ProviderApi, checkpoint: Path) -> MdsSettings:
    return MdsSettings(
        base_url=api.base,
        token="mds-secret",  # noqa: S106 - a test token
        checkpoint=checkpoint,
        since_ms=NOW_MS - 2 * 3_600_000,
        lag_ms=0,
    )


async def test_pages_are_followed_and_a_restart_resumes_from_the_checkpoint(
    provider: ProviderApi, examples: dict[str, Contract], tmp_path: Path
) -> None:
    checkpoint = tmp_path / "mds.json"
    clock = FakeClock(NOW_MS + 30_000)
    sink = ListSink()
    router = Router(examples.values())
    emitter = Emitter(router, "lyon-micromobility", sink=sink, connector="mds", clock=clock.now_ms)
    provider.fail_at = 4
    async with ClientSession() as session:
        first = MdsPoller(
            settings(provider, checkpoint), provider.fetch(aiohttp_fetch(session)), clock, emitter
        )
        with pytest.raises(ConnectorError):
            await first.poll_once()
        saved = json.loads(checkpoint.read_text())["events"]
        assert saved["next_url"].endswith("cursor=4")
        # A new process: same checkpoint file, nothing else carried over.
        second = MdsPoller(settings(provider, checkpoint), aiohttp_fetch(session), clock, emitter)
        await second.poll_once()
    pages = [r for r in provider.requests if r.startswith("/events")]
    assert pages[0].startswith(f"/events/recent?start_time={NOW_MS - 2 * 3_600_000}&end_time=")
    assert pages[1:] == ["/events/recent?cursor=2", "/events/recent?cursor=4"]
    trips = [r for r in provider.requests if r.startswith("/trips")]
    assert trips == ["/trips?end_time=2026-06-01T10", "/trips?end_time=2026-06-01T11"]

    raw_events = raw_event_ids(sink, router, "lyon-micromobility", "vehicle_events")
    assert sorted(raw_events) == sorted(e["event_id"] for e in EVENTS[:5])  # each exactly once
    assert len(raw_event_ids(sink, router, "lyon-micromobility", "trips")) == 1
    dlq = sink.topic("dlq.")
    assert [dict(r[3])[H_REASON] for r in dlq] == [b"OUTSIDE_TERRITORY"]
    state = json.loads(checkpoint.read_text())
    assert state["events"]["next_url"] is None
    assert state["events"]["since_ms"] == NOW_MS + 30_000  # read up to "now"
    assert state["trips"]["since_ms"] == NOW_MS  # the 11h hour is done; 12h is not over


async def test_a_second_poll_reads_only_what_is_new(
    provider: ProviderApi, examples: dict[str, Contract], tmp_path: Path
) -> None:
    clock = FakeClock(NOW_MS + 30_000)
    emitter = Emitter(
        Router(examples.values()),
        "lyon-micromobility",
        sink=ListSink(),
        connector="mds",
        clock=clock.now_ms,
    )
    async with ClientSession() as session:
        poller = MdsPoller(
            settings(provider, tmp_path / "c.json"), aiohttp_fetch(session), clock, emitter
        )
        await poller.poll_once()
        before = len(provider.requests)
        clock.now += 30_000
        await poller.poll_once()
    # The next query starts where the last one ended (this fake provider ignores the range).
    assert (
        provider.requests[before]
        == f"/events/recent?start_time={NOW_MS + 30_000}&end_time={NOW_MS + 60_000}"
    )
    assert not [r for r in provider.requests[before:] if r.startswith("/trips")]
