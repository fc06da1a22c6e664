"""``respublica connect mds`` against a spec-following local provider, on the real broker.

Before: the events loop recomputed ``until`` from the moving clock and kept querying tiny
windows (never reaching ``/trips``), and SIGTERM was never looked at. Now ``--polls 1``
ends in seconds with events and trips on raw, and SIGTERM stops the command within 2 s,
in the middle of a poll or between polls.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
import time
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestServer
from kafka import KafkaAdminClient, KafkaConsumer

from broker.kafka import topics
from contracts import Contract
from tests.connectors.mds_provider import (
    HOUR_MS,
    SIM_START,
    TOKEN,
    ProviderApi,
    late_contract,
    now_ms,
)

pytestmark = pytest.mark.integration


@pytest.fixture
def live(kafka_bootstrap: str, kafka_admin: KafkaAdminClient, tmp_path: Path) -> Iterator[Contract]:
    """Micromobility with MDS-sized lateness (events 2 h, trips 3 h), topics applied."""
    contract = late_contract(tmp_path, events="PT2H", trips="PT3H")
    with topics.TopicAdmin(kafka_bootstrap) as admin:
        topics.apply(admin, topics.plan(admin, [contract]))
    yield contract
    names = {spec.name for spec in topics.contract_topics(contract)}
    kafka_admin.delete_topics(sorted(names & set(kafka_admin.list_topics())))


@pytest.fixture
async def provider() -> AsyncIterator[Callable[..., Any]]:
    servers: list[TestServer] = []

    async def make(**options: Any) -> ProviderApi:
        real_start = now_ms() - 3 * HOUR_MS
        api = ProviderApi(start_ms=SIM_START, shift_ms=real_start - SIM_START, **options)
        server = TestServer(api.app(), host="127.0.0.1")
        await server.start_server()
        servers.append(server)
        api.base = str(server.make_url("")).rstrip("/")
        return api

    yield make
    for server in servers:
        await server.close()


async def connect(
    api: ProviderApi, contract: Contract, bootstrap: str, tmp_path: Path, *extra: str
) -> asyncio.subprocess.Process:
    since = now_ms() - 90 * 60_000
    args = [
        *("-m", "broker.cli", "connect", "mds", api.base),
        *("--contract", contract.id, "--contracts", str(contract.source)),
        *("--bootstrap", bootstrap, "--checkpoint", str(tmp_path / "mds.json")),
        *("--since", time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(since / 1000))),
        *extra,
    ]
    env = {**os.environ, "RESPUBLICA_MDS_TOKEN": TOKEN}
    return await asyncio.create_subprocess_exec(
        sys.executable,
        *args,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )


def count(consumer: KafkaConsumer, at_least: int, timeout_s: float = 20.0) -> int:
    seen = 0
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        seen += sum(len(b) for b in consumer.poll(timeout_ms=500).values())
        if seen >= at_least:
            break
    return seen


async def test_one_poll_ends_in_seconds_with_events_and_trips_on_raw(
    live: Contract,
    kafka_bootstrap: str,
    provider: Callable[..., Any],
    consumer_factory: Callable[..., KafkaConsumer],
    tmp_path: Path,
) -> None:
    api = await provider()
    started = time.monotonic()
    process = await connect(api, live, kafka_bootstrap, tmp_path, "--polls", "1")
    try:
        _, err = await asyncio.wait_for(process.communicate(), 60)
    finally:
        if process.returncode is None:
            process.kill()
    elapsed = time.monotonic() - started
    assert process.returncode == 0, err.decode()
    stats = json.loads((tmp_path / "mds.json").read_text())
    events = count(consumer_factory(live.topic_raw("vehicle_events")), 20)
    trips = count(consumer_factory(live.topic_raw("trips")), 5)
    print(
        f"\nconnect mds --polls 1: {elapsed:.1f}s, {len(api.requests)} requests, "
        f"{events} events and {trips} trips on raw; {err.decode().strip()}"
    )
    assert elapsed < 30
    assert len(api.requests) < 30  # 2 event windows, 1-2 trip hours, vehicles, pages
    assert events >= 20 and trips >= 5
    assert set(stats) == {"events", "trips"}


@pytest.mark.parametrize("moment", ["during a poll", "between polls"])
async def test_sigterm_stops_it_within_two_seconds(
    live: Contract, kafka_bootstrap: str, provider: Callable[..., Any], tmp_path: Path, moment: str
) -> None:
    slow = moment == "during a poll"
    api = await provider(delay_s=0.5 if slow else 0.0, page_size=5)
    process = await connect(api, live, kafka_bootstrap, tmp_path, "--interval", "60")
    try:
        deadline = time.monotonic() + 60
        checkpoint = tmp_path / "mds.json"
        while not (len(api.requests) >= 3 if slow else _caught_up(checkpoint)):
            assert time.monotonic() < deadline, "the connector never got going"
            assert process.returncode is None
            await asyncio.sleep(0.05)
        sent = time.monotonic()
        process.send_signal(signal.SIGTERM)
        _, err = await asyncio.wait_for(process.communicate(), 10)
        stopped_in = time.monotonic() - sent
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    print(f"\nSIGTERM {moment}: stopped in {stopped_in:.2f}s")
    assert process.returncode == 0, err.decode()
    assert stopped_in < 2.0
    assert b"stopped by a signal" in err


def _caught_up(checkpoint: Path) -> bool:
    try:
        state = json.loads(checkpoint.read_text())
    except (OSError, ValueError):
        return False
    return "trips" in state and state["trips"]["since_ms"] + HOUR_MS > now_ms() - 60_000
