"""Who reaches what on the gateway: HTTPS, grants per contract and stream, /metrics apart.

The TLS tests serve the real ``broker.ingest.server.serve`` on loopback with a certificate
from a CA made in the test (``broker.kafka.tls.LocalTls``); clients trust that CA only.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import aiohttp
import pytest
from prometheus_client import CollectorRegistry

from broker.ingest.auth import (
    ContractGrant,
    GatewayConfigError,
    ProviderGrant,
    hash_token,
    load_tokens,
)
from broker.ingest.gateway import GatewayConfig, make_app, make_metrics_app
from broker.ingest.server import (
    PLAINTEXT_WARNING,
    Listen,
    Ports,
    ServeConfig,
    serve,
    tls_context,
)
from broker.kafka.tls import LocalTls
from contracts import Contract
from tests.ingest.conftest import GRANTS, NOW_MS, TOKENS, ClientFactory, MemoryWriter, bearer
from tests.ingest.test_gateway import URL, good_events

pytestmark = pytest.mark.unit

TRIPS_URL = "/v1/contracts/lyon-micromobility/streams/trips/events"
VEHICLES_ONLY = (
    ProviderGrant(
        id="scootco",
        token_sha256=hash_token(TOKENS["scootco"]),
        contracts=(ContractGrant(id="lyon-micromobility", streams=("vehicle_events",)),),
    ),
    *GRANTS[1:],
)


# ------------------------------------------------------------------ grants per stream


async def test_a_stream_not_granted_is_403_and_nothing_is_written(
    gateway_client: ClientFactory, examples: dict[str, Contract]
) -> None:
    writer = MemoryWriter()
    client = await gateway_client(list(examples.values()), writer, grants=VEHICLES_ONLY)
    refused = await client.post(TRIPS_URL, json=[{"trip_id": "x"}], headers=bearer("scootco"))
    assert refused.status == 403
    assert (await refused.json())["error"] == "STREAM_NOT_GRANTED"
    assert writer.records == []
    accepted = await client.post(URL, json=good_events(3), headers=bearer("scootco"))
    assert accepted.status == 200 and (await accepted.json())["accepted"] == 3


@pytest.mark.parametrize(
    ("existing", "missing"),
    [
        # another tenant's contract, and a contract nobody has
        (
            "/v1/contracts/paris-str/streams/activity/events",
            "/v1/contracts/nowhere-at-all/streams/activity/events",
        ),
        # a stream of the contract not granted, and a stream the contract lacks
        (TRIPS_URL, "/v1/contracts/lyon-micromobility/streams/nosuchstream/events"),
    ],
)
async def test_refusals_do_not_tell_whether_other_contracts_or_streams_exist(
    gateway_client: ClientFactory, examples: dict[str, Contract], existing: str, missing: str
) -> None:
    client = await gateway_client(list(examples.values()), MemoryWriter(), grants=VEHICLES_ONLY)
    answers = []
    for url in (existing, missing):
        response = await client.post(url, json=good_events(1), headers=bearer("scootco"))
        body = await response.json()
        del body["request_id"]
        answers.append((response.status, body))
        text = str(body)
        assert "paris" not in text and "trips" not in text and "nosuch" not in text
    assert answers[0] == answers[1]
    assert answers[0][0] == 403


def test_tokens_file_grants_whole_contracts_or_listed_streams(tmp_path: Path) -> None:
    path = tmp_path / "tokens.yaml"
    path.write_text(
        f"providers:\n  - id: scootco\n    token_sha256: {hash_token('x')}\n"
        "    contracts:\n      - lyon-micromobility\n"
        "      - {id: paris-str, streams: [activity]}\n"
    )
    (grant,) = load_tokens(path)
    whole, narrow = grant.contracts
    assert whole == ContractGrant(id="lyon-micromobility", streams=None)
    assert whole.covers("trips") and narrow.covers("activity")
    assert not narrow.covers("trips")
    assert grant.grant("bordeaux-navigation") is None


@pytest.mark.parametrize(
    ("contracts", "where"),
    [
        ("[{id: paris-str, streams: []}]", "providers.0.contracts.0.streams"),
        ("[{id: paris-str, stream: [activity]}]", "providers.0.contracts.0.stream"),
        ("[paris-str, {id: paris-str, streams: [activity]}]", "granted more than once"),
    ],
)
def test_malformed_stream_grants_are_refused(tmp_path: Path, contracts: str, where: str) -> None:
    path = tmp_path / "tokens.yaml"
    path.write_text(
        f"providers:\n  - id: scootco\n    token_sha256: {hash_token('x')}\n"
        f"    contracts: {contracts}\n"
    )
    with pytest.raises(GatewayConfigError, match=where):
        load_tokens(path)


def test_a_granted_stream_the_contract_lacks_stops_the_gateway(
    examples: dict[str, Contract],
) -> None:
    typo = ProviderGrant(
        id="scootco",
        token_sha256=hash_token("x"),
        contracts=(ContractGrant(id="lyon-micromobility", streams=("vehicle_event",)),),
    )
    with pytest.raises(GatewayConfigError, match="lyon-micromobility has no stream vehicle_event"):
        GatewayConfig(contracts=(examples["lyon-micromobility"],), providers=(typo,))


# ------------------------------------------------------------------ /metrics apart


async def test_the_ingest_port_does_not_serve_metrics(
    gateway_client: ClientFactory, examples: dict[str, Contract]
) -> None:
    client = await gateway_client([examples["lyon-micromobility"]], MemoryWriter())
    assert (await client.get("/metrics")).status == 404
    assert (await client.get("/healthz")).status == 200


# ------------------------------------------------------------------ serve: TLS and listeners


@asynccontextmanager
async def served(
    contracts: list[Contract],
    writer: MemoryWriter,
    tls: ssl.SSLContext | None,
    *,
    max_connections: int = 16,
) -> AsyncIterator[Ports]:
    """``serve`` on loopback (free ports for the push API and /metrics) until the block ends."""
    registry = CollectorRegistry()
    config = GatewayConfig(contracts=tuple(contracts), providers=GRANTS)
    app = make_app(config, writer, clock=lambda: NOW_MS, registry=registry)
    where = ServeConfig(Listen("127.0.0.1", 0), Listen("127.0.0.1", 0), max_connections, tls)
    bound: asyncio.Future[Ports] = asyncio.get_running_loop().create_future()
    task = asyncio.create_task(
        serve(app, where, metrics=make_metrics_app(registry), ready=bound.set_result)
    )
    try:
        yield await asyncio.wait_for(asyncio.shield(bound), 10)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


@pytest.fixture(scope="module")
def local_tls(tmp_path_factory: pytest.TempPathFactory) -> LocalTls:
    """A CA and a certificate for 127.0.0.1 (key and chain in ``broker.pem``)."""
    tls = LocalTls(tmp_path_factory.mktemp("tls"))
    tls.create()
    return tls


def client_trusting(tls: LocalTls) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=str(tls.ca_cert))


async def test_https_takes_a_batch_and_plain_http_on_the_tls_port_fails(
    examples: dict[str, Contract], local_tls: LocalTls, caplog: pytest.LogCaptureFixture
) -> None:
    writer = MemoryWriter()
    context = tls_context(local_tls.broker_pem, local_tls.broker_pem)
    assert context.minimum_version == ssl.TLSVersion.TLSv1_2
    caplog.set_level(logging.WARNING)
    async with (
        served([examples["lyon-micromobility"]], writer, context) as ports,
        aiohttp.ClientSession() as session,
    ):
        https = f"https://127.0.0.1:{ports.ingest}"
        trust = client_trusting(local_tls)
        async with session.post(
            https + URL, json=good_events(4), headers=bearer("scootco"), ssl=trust
        ) as response:
            assert response.status == 200
            assert (await response.json())["accepted"] == 4
        assert len(writer.topic("raw.lyon-micromobility.vehicle_events")) == 4
        async with session.get(https + "/metrics", ssl=trust) as response:
            assert response.status == 404
        plain = f"http://127.0.0.1:{ports.ingest}{URL}"
        with pytest.raises(aiohttp.ClientError):
            await session.post(plain, json=good_events(1), headers=bearer("scootco"))
        with pytest.raises(aiohttp.ClientConnectorCertificateError):
            await session.get(https + "/healthz")  # the system's CAs do not know this one
        async with session.get(f"http://127.0.0.1:{ports.metrics}/metrics") as response:
            text = await response.text()
        assert 'respublica_http_requests_total{route="events",status="200"} 1.0' in text
    assert PLAINTEXT_WARNING not in caplog.text
    assert TOKENS["scootco"] not in caplog.text


async def test_plain_http_warns_at_start_and_serves_metrics_apart(
    examples: dict[str, Contract], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING)
    async with (
        served([examples["lyon-micromobility"]], MemoryWriter(), None) as ports,
        aiohttp.ClientSession() as session,
    ):
        assert PLAINTEXT_WARNING in caplog.text
        assert ports.metrics not in (None, ports.ingest)
        async with session.get(f"http://127.0.0.1:{ports.ingest}/metrics") as response:
            assert response.status == 404
        async with session.get(f"http://127.0.0.1:{ports.metrics}/metrics") as response:
            assert response.status == 200
            assert "# HELP respublica_events_ingested_total" in await response.text()
        async with session.get(f"http://127.0.0.1:{ports.metrics}/healthz") as response:
            assert response.status == 404  # the metrics listener serves /metrics only
