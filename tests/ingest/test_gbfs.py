"""GBFS v2.3 and v3: parsing spec-shaped feeds, polling a local server, id-rotation checks."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable
from typing import Any

import pytest
from aiohttp import ClientSession, web
from prometheus_client import CollectorRegistry, generate_latest

from connectors import gbfs
from connectors.outbox import Outbox
from connectors.poll import aiohttp_fetch, run_polls
from connectors.pollers import GbfsPoller, GbfsSettings, rotation_counter
from connectors.simulate import SimOptions
from connectors.simulate.gbfs import GbfsFeedSimulator
from connectors.validate import Router
from contracts import Contract
from tests.connectors.outbox_support import list_outbox
from tests.ingest.conftest import NOW_MS, FakeClock, ListSink, data_file

CONTRACT = "lyon-micromobility"


def test_v2_3_free_bike_status_parses_free_floating_bikes() -> None:
    snapshot = gbfs.parse_vehicle_feed(json.loads(data_file("gbfs_v2_3_free_bike_status.json")))
    assert (snapshot.version, snapshot.ttl_s, snapshot.skipped) == ("2.3", 30, 1)
    assert snapshot.last_updated_ms == 1_780_315_170_000
    states = [
        (v.vehicle_id, v.state, v.last_reported_ms, v.fuel_percent) for v in snapshot.vehicles
    ]
    assert states == [
        ("ghi799", "available", 1_780_315_150_000, 0.72),
        ("jkl012", "reserved", 1_780_315_140_000, None),
        ("mno345", "unavailable", 1_780_315_100_000, 0.02),
    ]


def test_v3_vehicle_status_parses_rfc3339_times_and_skips_docked() -> None:
    snapshot = gbfs.parse_vehicle_feed(json.loads(data_file("gbfs_v3_vehicle_status.json")))
    assert (snapshot.version, snapshot.skipped, len(snapshot.vehicles)) == ("3.0", 1, 2)
    assert snapshot.last_updated_ms == NOW_MS - 30_000  # 13:59:30+02:00 is 11:59:30Z
    assert snapshot.vehicles[0].last_reported_ms == NOW_MS - 50_000
    assert snapshot.vehicles[1].state == "reserved"


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("gbfs_v2_3_station_status.json", [("station12", 1, 3, True)]),
        ("gbfs_v3_station_status.json", [("86", 4, 6, True), ("87", 0, 10, False)]),
    ],
)
def test_station_status_counts(name: str, expected: list[tuple[str, int, int, bool]]) -> None:
    _, stations = gbfs.parse_station_status(json.loads(data_file(name)))
    assert [
        (s.station_id, s.vehicles_available, s.docks_available, s.is_renting) for s in stations
    ] == expected


def test_vehicle_types_and_discovery() -> None:
    types = gbfs.parse_vehicle_types(json.loads(data_file("gbfs_v3_vehicle_types.json")))
    assert types == {
        "scooter": ("scooter_standing", "electric"),
        "ebike": ("bicycle", "electric_assist"),
    }
    feeds = gbfs.discover_feeds(json.loads(data_file("gbfs_v3_gbfs.json")))
    assert feeds["vehicle_status"] == "{base}/vehicle_status.json"
    v2 = {
        "last_updated": 1,
        "ttl": 0,
        "data": {"en": {"feeds": [{"name": "free_bike_status", "url": "u"}]}},
    }
    assert gbfs.discover_feeds(v2) == {"free_bike_status": "u"}


def outbox(examples: dict[str, Contract], sink: ListSink, clock: Callable[[], int]) -> Outbox:
    return list_outbox(Router(examples.values()), CONTRACT, sink, clock, "gbfs")


async def test_poller_discovers_feeds_emits_changes_and_honours_ttl(
    examples: dict[str, Contract], feed_server: Callable[..., Any]
) -> None:
    base: list[str] = []

    def serve(name: str) -> Callable[[web.Request], Any]:
        async def handler(request: web.Request) -> web.Response:
            text = data_file(name).decode().replace("{base}", base[0])
            return web.Response(text=text, content_type="application/json")

        return handler

    base.append(
        await feed_server(
            {
                "/gbfs.json": serve("gbfs_v3_gbfs.json"),
                "/vehicle_status.json": serve("gbfs_v3_vehicle_status.json"),
                "/vehicle_types.json": serve("gbfs_v3_vehicle_types.json"),
                "/station_status.json": serve("gbfs_v3_station_status.json"),
            }
        )
    )
    sink = ListSink()
    async with ClientSession() as session:
        poller = GbfsPoller(
            GbfsSettings(feed_url=f"{base[0]}/gbfs.json", provider_id="p-1", min_interval_s=15.0),
            aiohttp_fetch(session),
            FakeClock(NOW_MS),
            outbox(examples, sink, lambda: NOW_MS),
            rotation_counter(CollectorRegistry()),
        )
        assert await poller.poll_once() == 15.0  # ttl 0: the minimum interval applies
        assert await poller.poll_once() == 15.0
    raw = sink.topic("raw.")
    assert len(raw) == 2 and sink.topic("dlq.") == []  # the second, unchanged poll: nothing
    assert (poller.stats.stations, poller.stats.violations) == (2, 0)


async def rotation_run(
    examples: dict[str, Contract], feed_server: Callable[..., Any], rotate: bool, version: str
) -> tuple[GbfsFeedSimulator, str, ListSink]:
    feed = GbfsFeedSimulator(SimOptions(seed=3, size=60), rotate=rotate, trip_share=0.2)

    async def handler(request: web.Request) -> web.Response:
        feed.poll()
        doc = feed.vehicle_status() if version == "3.0" else feed.free_bike_status()
        return web.json_response(doc)

    base = await feed_server({"/vehicles.json": handler})
    registry = CollectorRegistry()
    clock = FakeClock(feed.options.start_ms)
    sink = ListSink()
    async with ClientSession() as session:
        poller = GbfsPoller(
            GbfsSettings(feed_url=f"{base}/vehicles.json", provider_id="p-1", source="lyon"),
            aiohttp_fetch(session),
            clock,
            outbox(examples, sink, lambda: feed.clock_ms),
            rotation_counter(registry),
        )
        await run_polls(poller.poll_once, clock, asyncio.Event(), max_polls=30)
    assert clock.slept == [60.0] * 29  # the feed's ttl
    return feed, generate_latest(registry).decode(), sink


@pytest.mark.parametrize("version", ["2.3", "3.0"])
async def test_rotation_violations_are_counted_never_logged(
    examples: dict[str, Contract],
    feed_server: Callable[..., Any],
    version: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG, logger="connectors")
    feed, metrics, sink = await rotation_run(examples, feed_server, rotate=False, version=version)
    assert feed.expected_violations > 20
    line = (
        'respublica_gbfs_id_rotation_violations_total{contract="lyon-micromobility",'
        f'source="lyon"}} {float(feed.expected_violations)}'
    )
    assert line in metrics
    ids = feed.vehicle_ids
    text = metrics + caplog.text + "".join(str(h) for r in sink.records for h in r[3])
    assert not [i for i in ids if i in text]
    assert sink.topic("dlq.") == []


async def test_rotating_feed_has_no_violations(
    examples: dict[str, Contract], feed_server: Callable[..., Any]
) -> None:
    feed, metrics, sink = await rotation_run(examples, feed_server, rotate=True, version="3.0")
    assert feed.expected_violations == 0
    assert (
        'respublica_gbfs_id_rotation_violations_total{contract="lyon-micromobility",'
        'source="lyon"} 0.0' in metrics
    )
    assert len(sink.topic("raw.")) > 60  # the first listing plus every return from a trip
