"""Fixtures for ingestion tests: example contracts, provider tokens, an in-memory writer.

Gateway tests run the real aiohttp application on 127.0.0.1 (``aiohttp.test_utils``); the
unit ones write to ``MemoryWriter``, the integration ones to the session's Kafka broker.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from prometheus_client import CollectorRegistry

from broker.ingest.auth import ProviderGrant, hash_token
from broker.ingest.gateway import GATEWAY_KEY, GatewayConfig, make_app, make_metrics_app
from broker.ingest.server import SERVER_OPTIONS
from broker.kafka.serde import decode_body
from broker.kafka.writer import KafkaUnavailable, OutRecord
from connectors.validate import Router
from contracts import Contract, examples_dir, load_contracts
from contracts.copies import example_data, write_contract

NOW = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)
NOW_MS = int(NOW.timestamp() * 1000)
TOKENS = {
    "scootco": "scootco-token-0123456789",
    "staybnb": "staybnb-token-9876543210",
    "routely": "routely-token-5555555555",
}
GRANTS = (
    ProviderGrant(
        id="scootco", token_sha256=hash_token(TOKENS["scootco"]), contracts=("lyon-micromobility",)
    ),
    ProviderGrant(
        id="staybnb", token_sha256=hash_token(TOKENS["staybnb"]), contracts=("paris-str",)
    ),
    ProviderGrant(
        id="routely", token_sha256=hash_token(TOKENS["routely"]), contracts=("bordeaux-navigation",)
    ),
)
DATA = Path(__file__).parent / "data"

ClientFactory = Callable[..., Any]


def bearer(provider: str) -> dict[str, str]:
    """The Authorization header of a test provider."""
    return {"Authorization": f"Bearer {TOKENS[provider]}"}


class MemoryWriter:
    """A ``BatchWriter`` that keeps batches in memory, or fails every write when told to."""

    def __init__(self) -> None:
        self.records: list[OutRecord] = []
        self.fail = False
        self.closed = False

    @property
    def connected(self) -> bool:
        return not self.fail

    async def write(self, records: Sequence[OutRecord]) -> None:
        if self.fail:
            raise KafkaUnavailable("test")
        self.records.extend(records)

    async def close(self) -> None:
        self.closed = True

    def topic(self, name: str) -> list[OutRecord]:
        return [r for r in self.records if r.topic == name]


@pytest.fixture(scope="session")
def examples() -> dict[str, Contract]:
    """The bundled example contracts, by id, loaded at ``NOW``."""
    return {c.id: c for c in load_contracts([examples_dir()], now=NOW)}


def contract_data(name: str) -> dict[str, Any]:
    """An example contract as a dict, with schema and zone paths made absolute."""
    return example_data(name)


@pytest.fixture
def contract_copy(tmp_path: Path) -> Callable[..., Contract]:
    """``contract_copy("micromobility.yaml", **overrides)`` under a unique id (own topics)."""

    def make(name: str = "micromobility.yaml", **overrides: Any) -> Contract:
        data = contract_data(name)
        data["id"] = f"t{uuid.uuid4().hex[:10]}"
        data.update(overrides)
        return load_contracts([write_contract(data, tmp_path)], now=NOW)[0]

    return make


@pytest.fixture
async def gateway_client() -> AsyncIterator[ClientFactory]:
    """``await gateway_client(contracts, writer, **config)`` -> a client of a live gateway."""
    clients: list[TestClient[Any, Any]] = []

    async def make(
        contracts: Sequence[Contract],
        writer: Any,
        *,
        grants: Sequence[ProviderGrant] = GRANTS,
        clock: Callable[[], int] | None = None,
        registry: CollectorRegistry | None = None,
        **limits: Any,
    ) -> TestClient[Any, Any]:
        config = GatewayConfig(contracts=tuple(contracts), providers=tuple(grants), **limits)
        app = make_app(
            config,
            writer,
            clock=clock or (lambda: NOW_MS),
            registry=registry or CollectorRegistry(),
        )
        server = TestServer(app, host="127.0.0.1")
        # Runner options go to start_server: the access log must not print request paths,
        # and gzip is left to the gateway (bounded).
        await server.start_server(**SERVER_OPTIONS)
        client: TestClient[Any, Any] = TestClient(server)
        await client.start_server()
        clients.append(client)
        return client

    yield make
    for client in clients:
        # Bounded, so a hung shutdown fails this test in a minute rather than the whole run.
        await asyncio.wait_for(client.close(), 60)


async def scrape(client: TestClient[Any, Any]) -> str:
    """The ``/metrics`` text of a test gateway, from its own metrics app (not the ingest port)."""
    registry = client.app[GATEWAY_KEY].registry
    async with TestClient(TestServer(make_metrics_app(registry), host="127.0.0.1")) as metrics:
        response = await metrics.get("/metrics")
        assert response.status == 200
        return await response.text()


class ListSink:
    """A ``Sink`` keeping records in memory, by topic."""

    def __init__(self) -> None:
        self.records: list[tuple[str, bytes | None, bytes, list[tuple[str, bytes]]]] = []
        self.flushes = 0

    def send(
        self,
        topic: str,
        key: bytes | None,
        value: bytes,
        headers: list[tuple[str, bytes]],
        timestamp_ms: int | None = None,
    ) -> None:
        self.records.append((topic, key, value, list(headers)))

    def flush(self) -> None:
        self.flushes += 1

    def topic(self, prefix: str) -> list[tuple[str, bytes | None, bytes, list[tuple[str, bytes]]]]:
        return [r for r in self.records if r[0].startswith(prefix)]


class FakeClock:
    """A clock whose ``sleep`` only moves time on."""

    def __init__(self, now_ms: int = NOW_MS) -> None:
        self.now = now_ms
        self.slept: list[float] = []

    def now_ms(self) -> int:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += int(seconds * 1000)


Handler = Callable[[Any], Any]


@pytest.fixture
async def feed_server() -> AsyncIterator[Callable[..., Any]]:
    """``await feed_server({path: handler})`` -> base URL of a local server on 127.0.0.1."""
    servers: list[TestServer] = []

    async def make(routes: dict[str, Handler]) -> str:
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


def data_file(name: str) -> bytes:
    """A fixture file of ``tests/ingest/data``."""
    return (DATA / name).read_bytes()


def raw_event_ids(sink: ListSink, router: Router, contract_id: str, stream: str) -> list[str]:
    """The event ids of the records a sink received for ``raw.<c>.<s>`` (decoded Avro)."""
    validator = router.validators[(contract_id, stream)]
    return [
        decode_body(value, validator.schema.parsed)["event_id"]
        for topic, _, value, _ in sink.records
        if topic == validator.raw_topic
    ]
