"""Rental activity files (CSV, EU single-entry-point JSON) and the Waze-style feed."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest
from aiohttp import ClientSession, web

from connectors import waze
from connectors.emit import Emitter
from connectors.poll import aiohttp_fetch
from connectors.pollers import WazePoller, WazeSettings
from connectors.rentals import import_activity
from connectors.validate import H_REASON, H_SOURCE, Router
from contracts import Contract
from tests.connectors.outbox_support import list_outbox
from tests.ingest.conftest import NOW_MS, ListSink, data_file, raw_event_ids


def emitter(examples: dict[str, Contract], contract: str, sink: ListSink) -> Emitter:
    return Emitter(
        Router(examples.values()), contract, sink=sink, connector="file", clock=lambda: NOW_MS
    )


def test_csv_rows_are_rejected_with_row_numbers_reasons_and_fields(
    examples: dict[str, Contract],
) -> None:
    sink = ListSink()
    contract = examples["paris-str"]
    report = import_activity(
        data_file("rentals_activity.csv"),
        "csv",
        emitter(examples, "paris-str", sink),
        contract.stream("activity"),
    )
    assert (report.rows, report.accepted) == (11, 2)
    assert [str(r) for r in report.rejections] == [
        "row 4: WRONG_TYPE at nights",
        "row 5: MISSING_FIELD at registration_number",
        "row 6: OUT_OF_RANGE at lat",
        "row 7: OUTSIDE_TERRITORY at lat,lon",
        "row 8: WRONG_TYPE at period_start",
        "row 9: DUPLICATE_EVENT at event_id",
        "row 10: TOO_LATE at period_start",
        "row 11: WRONG_TYPE at guests",
        "row 12: UNKNOWN_FIELD",
    ]
    dlq = sink.topic("dlq.paris-str.activity")
    assert [dict(h)[H_SOURCE] for *_, h in dlq][0] == b"rentals-file#row=4"
    assert len(dlq) == 9 and sink.flushes == 1
    text = "\n".join(str(r) for r in report.rejections)
    for value in ("three", "Oberkampf", "75111000123AB", "95.0", "last tuesday", "2.5", "extra"):
        assert value not in text


def test_sdep_json_maps_the_eu_fields(examples: dict[str, Contract]) -> None:
    sink = ListSink()
    router = Router(examples.values())
    contract = examples["paris-str"]
    report = import_activity(
        data_file("rentals_activity_sdep.json"),
        "json",
        Emitter(router, "paris-str", sink=sink, connector="file", clock=lambda: NOW_MS),
        contract.stream("activity"),
    )
    assert [str(r) for r in report.rejections] == [
        "row 2: WRONG_TYPE at guests",
        "row 3: WRONG_TYPE at temporal.startDatetime",
        "row 4: NOT_AN_OBJECT",
    ]
    assert raw_event_ids(sink, router, "paris-str", "activity") == ["sdep-0001"]


@pytest.mark.parametrize(
    ("data", "reason"),
    [(b"\xff\xfe", "INVALID_UTF8"), (b"{", "MALFORMED_JSON"), (b'{"x": 1}', "NOT_AN_OBJECT")],
)
def test_unreadable_json_files_are_one_rejection(
    examples: dict[str, Contract], data: bytes, reason: str
) -> None:
    contract = examples["paris-str"]
    report = import_activity(
        data, "json", emitter(examples, "paris-str", ListSink()), contract.stream("activity")
    )
    assert [(r.row, r.reason) for r in report.rejections] == [(1, reason)]


def test_waze_feed_maps_alerts_and_jams() -> None:
    reports = list(waze.parse_feed(json.loads(data_file("waze_feed.json"))))
    alerts = [r.record for r in reports if r.stream == "alerts"]
    jams = [r for r in reports if r.stream == "jams"]
    assert alerts[0] == {
        "event_id": "a1c8f6e2-3b4d-4e5f-8a9b-0c1d2e3f4a51",
        "reporter_id": "a1c8f6e2-3b4d-4e5f-8a9b-0c1d2e3f4a51",
        "timestamp": 1780315100000,
        "lat": 44.87,
        "lon": -0.587,
        "type": "ACCIDENT",
        "subtype": "ACCIDENT_MINOR",
        "street": "Rocade A630",
        "reliability": 7,
    }
    assert alerts[1]["subtype"] is None
    assert (jams[0].record["lat"], jams[0].record["speed_kmh"], jams[0].record["level"]) == (
        44.87,
        28.5,
        3,
    )
    assert jams[1].rejected is not None and jams[1].rejected.field_path == "delay"
    assert jams[2].record["speed_kmh"] == pytest.approx(19.8)


async def test_waze_poller_emits_each_report_once(
    examples: dict[str, Contract], feed_server: Callable[..., Any]
) -> None:
    async def feed(request: web.Request) -> web.Response:
        return web.Response(body=data_file("waze_feed.json"), content_type="application/json")

    base = await feed_server({"/feed": feed})
    sink = ListSink()
    router = Router(examples.values())
    async with ClientSession() as session:
        poller = WazePoller(
            WazeSettings(feed_url=f"{base}/feed"),
            aiohttp_fetch(session),
            list_outbox(router, "bordeaux-navigation", sink, lambda: NOW_MS, "waze"),
        )
        assert await poller.poll_once() == 120.0
        await poller.poll_once()
    assert len(raw_event_ids(sink, router, "bordeaux-navigation", "alerts")) == 2
    assert len(raw_event_ids(sink, router, "bordeaux-navigation", "jams")) == 2
    reasons = sorted((t, dict(h)[H_REASON]) for t, _, _, h in sink.topic("dlq."))
    assert reasons == [
        ("dlq.bordeaux-navigation.alerts", b"MISSING_FIELD"),
        ("dlq.bordeaux-navigation.jams", b"OUT_OF_RANGE"),
    ]
    sources = [dict(h)[H_SOURCE] for *_, h in sink.topic("dlq.")]
    assert base.encode() not in b"".join(sources)  # the feed URL may hold a secret
