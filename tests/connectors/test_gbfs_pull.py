"""GBFS as published: discovery by content, RFC 3339 as the schema allows, ttl refresh,
snapshot time, and nothing counted as sent before Kafka has it.

Each test names the gap it closes; before, every one of them failed: discovery needed a URL
ending in ``gbfs.json``, ``2026-06-01t12:00:00z`` failed the whole feed, ``gbfs.json`` and
``vehicle_types`` were read once, a parked vehicle's record carried its ``last_reported``
(rejected TOO_LATE after the lateness) and the tracker remembered it anyway.
"""

from __future__ import annotations

import os
import sys
from collections.abc import AsyncIterator, Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from aiohttp import ClientSession, web
from aiohttp.test_utils import TestServer
from kafka import KafkaAdminClient, KafkaConsumer
from prometheus_client import CollectorRegistry

from broker.kafka import topics
from broker.kafka.serde import decode_body
from broker.kafka.writer import KafkaUnavailable, OutRecord
from connectors import gbfs
from connectors.outbox import Outbox
from connectors.poll import aiohttp_fetch
from connectors.pollers import GbfsPoller, GbfsSettings, rotation_counter
from connectors.validate import H_REASON, Router
from contracts import Contract, load_contracts
from contracts.copies import example_data, write_contract
from tests.ingest.conftest import FakeClock, ListSink

HOUR_MS = 3_600_000


@pytest.fixture
async def gbfs_server() -> AsyncIterator[Callable[..., Any]]:
    """``await gbfs_server({path: handler})`` -> base URL of a local server on 127.0.0.1."""
    servers: list[TestServer] = []

    async def make(routes: dict[str, Any]) -> str:
        app = web.Application()
        for path, handler in routes.items():
            app.router.add_get(path, handler)
        server = TestServer(app, host="127.0.0.1")
        await server.start_server()
        servers.append(server)
        return str(server.make_url("")).rstrip("/")

    yield make
    for server in servers:
        await server.close()


def rfc3339(ms: int, lower: bool = False) -> str:
    text = datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    return text.lower() if lower else text


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2026-06-01T12:00:00Z", 1_780_315_200_000),
        ("2026-06-01t12:00:00z", 1_780_315_200_000),  # RFC 3339 5.6: T and Z may be lowercase
        ("2026-06-01T14:00:00+02:00", 1_780_315_200_000),
        ("2026-06-01T12:00:00.123456789Z", 1_780_315_200_123),
        ("2026-06-01T12:00:00", None),  # no offset
        ("2026-06-01 12:00:00Z", None),
        ("20260601T120000Z", None),  # ISO 8601 basic format: not RFC 3339
        ("2026-02-30T12:00:00Z", None),
    ],
)
def test_rfc3339_as_the_schema_allows(text: str, expected: int | None) -> None:
    assert gbfs.gbfs_time_ms(text) == expected


class System:
    """A GBFS 3.0 system on a local server, its documents made at the current time."""

    def __init__(self, now: Callable[[], int], lower: bool = False) -> None:
        self.now = now
        self.lower = lower
        self.base = ""
        self.reads: dict[str, int] = {}
        self.discovery_path = "/gbfs"
        self.query = ""
        self.discovery_ttl = 0
        self.last_updated_offset_ms = 0
        self.vehicles = [
            {
                "vehicle_id": "parked-an-hour",
                "lat": 45.7606,
                "lon": 4.8593,
                "is_reserved": False,
                "is_disabled": False,
                "vehicle_type_id": "ebike",
                "last_reported": rfc3339(now() - HOUR_MS),
            },
            {
                "vehicle_id": "just-reported",
                "lat": 45.7578,
                "lon": 4.832,
                "is_reserved": False,
                "is_disabled": False,
                "vehicle_type_id": "scooter",
                "last_reported": rfc3339(now() - 5_000),
            },
        ]

    def routes(self) -> dict[str, Callable[[web.Request], Any]]:
        return {
            self.discovery_path: self.discovery,
            "/v3/vehicle_status": self.vehicle_status,
            "/v3/vehicle_types": self.vehicle_types,
            "/v3/system_information": self.system_information,
        }

    def _doc(self, name: str, ttl: int, data: dict[str, Any]) -> web.Response:
        self.reads[name] = self.reads.get(name, 0) + 1
        updated = rfc3339(self.now() + self.last_updated_offset_ms, self.lower)
        return web.json_response(
            {"last_updated": updated, "ttl": ttl, "version": "3.0", "data": data}
        )

    async def discovery(self, request: web.Request) -> web.Response:
        feeds = [
            {"name": name, "url": f"{self.base}/v3/{name}{self.query}"}
            for name in ("system_information", "vehicle_types", "vehicle_status")
        ]
        return self._doc("gbfs", self.discovery_ttl, {"feeds": feeds})

    async def vehicle_status(self, request: web.Request) -> web.Response:
        return self._doc("vehicle_status", 30, {"vehicles": self.vehicles})

    async def vehicle_types(self, request: web.Request) -> web.Response:
        types = [
            {"vehicle_type_id": "ebike", "form_factor": "bicycle", "propulsion_type": "human"},
            {
                "vehicle_type_id": "scooter",
                "form_factor": "scooter_standing",
                "propulsion_type": "electric",
                "max_range_meters": 30000,
            },
        ]
        return self._doc("vehicle_types", 120, {"vehicle_types": types})

    async def system_information(self, request: web.Request) -> web.Response:
        return self._doc("system_information", 3600, {"system_id": "lyon", "languages": ["fr"]})


def real_contract(tmp_path: Path) -> Contract:
    """Micromobility (lateness 5 min, as the example) under a unique id, loaded now."""
    data = example_data("micromobility.yaml")
    data["id"] = f"g{os.urandom(5).hex()}"
    return load_contracts([write_contract(data, tmp_path)], now=datetime.now(UTC))[0]


class FailingOnce:
    """A ``BatchWriter`` that refuses its first batch (Kafka away), then lands in a sink."""

    def __init__(self, sink: ListSink) -> None:
        self.sink = sink
        self.failed = False
        self.connected = True

    async def write(self, records: list[OutRecord]) -> None:
        if not self.failed:
            self.failed = True
            raise KafkaUnavailable("test")
        for r in records:
            self.sink.send(r.topic, r.key, r.value, r.headers)

    async def close(self) -> None:
        """Nothing to release."""


def make_poller(
    system: System, contract: Contract, sink: ListSink, clock: FakeClock, session: ClientSession
) -> GbfsPoller:
    writer = FailingOnce(sink)
    outbox = Outbox(
        Router([contract]), contract.id, writer=lambda: writer, connector="gbfs", clock=clock
    )
    url = f"{system.base}{system.discovery_path}{system.query}"
    settings = GbfsSettings(feed_url=url, provider_id="p-1", min_interval_s=1.0)
    return GbfsPoller(
        settings, aiohttp_fetch(session), clock, outbox, rotation_counter(CollectorRegistry())
    )


def raw_records(sink: ListSink, contract: Contract) -> list[dict[str, Any]]:
    schema = Router([contract]).validators[(contract.id, "vehicle_events")].schema.parsed
    topic = contract.topic_raw("vehicle_events")
    return [decode_body(value, schema) for t, _, value, _ in sink.records if t == topic]


@pytest.mark.parametrize(
    ("path", "query", "lower"),
    [("/gbfs", "", False), ("/system/lyon/gbfs.json", "?key=s3cret&lang=fr", True)],
    ids=["a /gbfs path", "a query string and lowercase t/z"],
)
async def test_a_v3_system_is_found_by_content_and_a_parked_vehicle_counts_as_available(
    gbfs_server: Callable[..., Any], tmp_path: Path, path: str, query: str, lower: bool
) -> None:
    clock = FakeClock(int(datetime.now(UTC).timestamp() * 1000))
    system = System(clock.now_ms, lower)
    system.discovery_path, system.query = path, query
    system.base = await gbfs_server(system.routes())
    contract, sink = real_contract(tmp_path), ListSink()
    async with ClientSession() as session:
        poller = make_poller(system, contract, sink, clock, session)
        observed = clock.now  # the snapshot's time (the retry's wait moves the fake clock on)
        assert await poller.poll_once() == 30.0
    records = {r["vehicle_id"]: r for r in raw_records(sink, contract)}
    assert sink.topic("dlq.") == []
    parked = records["parked-an-hour"]
    # Observed at the snapshot's last_updated (whole seconds here), not an hour ago.
    assert (parked["event_type"], parked["timestamp"]) == ("available", observed // 1000 * 1000)
    assert (parked["vehicle_type"], parked["propulsion"]) == ("bicycle", "human")
    assert poller.outbox.failures == 1  # Kafka refused once: the same batch went again


async def test_discovery_and_vehicle_types_are_read_again_when_their_ttl_runs_out(
    gbfs_server: Callable[..., Any], tmp_path: Path
) -> None:
    clock = FakeClock(int(datetime.now(UTC).timestamp() * 1000))
    system = System(clock.now_ms)
    system.discovery_ttl = 60
    system.base = await gbfs_server(system.routes())
    async with ClientSession() as session:
        poller = make_poller(system, real_contract(tmp_path), ListSink(), clock, session)
        for _ in range(9):  # one poll every 30 s (the vehicle feed's ttl): 4 minutes
            await clock.sleep(await poller.poll_once())
    assert system.reads["vehicle_status"] == 9
    assert system.reads["gbfs"] == 5  # at 0, 60, 120, 180, 240 s
    assert system.reads["vehicle_types"] == 3  # at 0, 120, 240 s


async def test_a_stale_snapshot_refused_as_too_late_is_sent_again_when_fresh(
    gbfs_server: Callable[..., Any], tmp_path: Path
) -> None:
    clock = FakeClock(int(datetime.now(UTC).timestamp() * 1000))
    system = System(clock.now_ms)
    system.last_updated_offset_ms = -HOUR_MS  # a feed stuck an hour ago
    system.base = await gbfs_server(system.routes())
    contract, sink = real_contract(tmp_path), ListSink()
    async with ClientSession() as session:
        poller = make_poller(system, contract, sink, clock, session)
        await poller.poll_once()
        assert [dict(h)[H_REASON] for *_, h in sink.topic("dlq.")] == [b"TOO_LATE"] * 2
        system.last_updated_offset_ms = 0  # fresh again, nothing else changed
        await poller.poll_once()
        await poller.poll_once()  # unchanged now: nothing more
    assert sorted(r["vehicle_id"] for r in raw_records(sink, contract)) == [
        "just-reported",
        "parked-an-hour",
    ]


def test_a_document_that_is_neither_discovery_nor_vehicles_is_a_clear_error() -> None:
    doc = {"last_updated": 1, "ttl": 0, "version": "2.3", "data": {"stations": []}}
    assert not gbfs.is_vehicle_feed(doc)
    with pytest.raises(gbfs.ConnectorError, match="neither a discovery"):
        gbfs.discover_feeds(doc)


@pytest.fixture
def live(kafka_bootstrap: str, kafka_admin: KafkaAdminClient, tmp_path: Path) -> Iterator[Contract]:
    contract = real_contract(tmp_path)
    with topics.TopicAdmin(kafka_bootstrap) as admin:
        topics.apply(admin, topics.plan(admin, [contract]))
    yield contract
    names = {spec.name for spec in topics.contract_topics(contract)}
    kafka_admin.delete_topics(sorted(names & set(kafka_admin.list_topics())))


@pytest.mark.integration
@pytest.mark.parametrize(("path", "query"), [("/gbfs", ""), ("/gbfs", "?key=s3cret")])
async def test_connect_gbfs_ingests_a_v3_system_without_gbfs_json_in_its_url(
    live: Contract,
    kafka_bootstrap: str,
    gbfs_server: Callable[..., Any],
    consumer_factory: Callable[..., KafkaConsumer],
    path: str,
    query: str,
) -> None:
    import asyncio

    system = System(lambda: int(datetime.now(UTC).timestamp() * 1000))
    system.discovery_path, system.query = path, query
    system.base = await gbfs_server(system.routes())
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        *("-m", "broker.cli", "connect", "gbfs", f"{system.base}{path}{query}"),
        *("--contract", live.id, "--contracts", str(live.source), "--provider-id", "p-1"),
        *("--bootstrap", kafka_bootstrap, "--polls", "1"),
        stderr=asyncio.subprocess.PIPE,
    )
    _, err = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode == 0, err.decode()
    assert b"accepted 2; rejected: none" in err
    consumer = consumer_factory(live.topic_raw("vehicle_events"))
    seen = 0
    for _ in range(40):
        seen += sum(len(b) for b in consumer.poll(timeout_ms=500).values())
        if seen >= 2:
            break
    assert seen == 2
