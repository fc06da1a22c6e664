"""A pull connector rides out a Kafka outage on a real broker of its own, stopped and started.

Before: a batch Kafka did not acknowledge raised ``ConnectorError`` ("N of M records were
not acknowledged") and ``respublica connect`` exited. Now the MDS poller's ``Outbox`` waits,
replaces its producer and sends the same batch again until the broker is back; the
checkpoint does not move while the batch is unacknowledged, and when the broker returns
every event of the provider's windows is on raw.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import ClientSession
from aiohttp.test_utils import TestServer
from kafka import KafkaConsumer

from broker.kafka import topics
from broker.kafka.local import LocalKafka, LocalKafkaConfig, free_port_pair
from broker.kafka.serde import decode_body
from broker.kafka.writer import KafkaBatchWriter, ProducerSettings
from connectors.mds_poller import MdsPoller, MdsSettings
from connectors.outbox import Backoff, Outbox
from connectors.poll import SystemClock, aiohttp_fetch
from connectors.validate import Router
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
def own_broker(tmp_path: Path) -> Iterator[LocalKafka]:
    """A secure single-node broker that this test alone stops and starts."""
    broker = LocalKafka(
        # A second JVM on a busy 2-core machine: give it the time a loaded CI run needs.
        LocalKafkaConfig(
            port=free_port_pair(), data_dir=tmp_path / "kafka", heap="256m", start_timeout_s=180
        )
    )
    broker.start()
    try:
        yield broker
    finally:
        broker.stop()


@pytest.fixture
async def api() -> AsyncIterator[ProviderApi]:
    real_start = now_ms() - 2 * HOUR_MS
    provider = ProviderApi(
        start_ms=SIM_START, shift_ms=real_start - SIM_START, fleet_size=600, page_size=200
    )
    server = TestServer(provider.app(), host="127.0.0.1")
    await server.start_server()
    provider.base = str(server.make_url("")).rstrip("/")
    yield provider
    await server.close()


async def until(condition: Any, timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.1)


def raw_ids(broker: LocalKafka, contract: Contract) -> set[str]:
    topic = contract.topic_raw("vehicle_events")
    schema = Router([contract]).validators[(contract.id, "vehicle_events")].schema.parsed
    consumer = KafkaConsumer(
        topic,
        **broker.settings().kafka_python("tests"),
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        consumer_timeout_ms=5000,
    )
    try:
        return {decode_body(record.value, schema)["event_id"] for record in consumer}
    finally:
        consumer.close()


async def test_the_mds_poller_waits_out_a_broker_outage_and_loses_nothing(
    own_broker: LocalKafka, api: ProviderApi, tmp_path: Path
) -> None:
    contract = late_contract(tmp_path)
    with topics.TopicAdmin(own_broker.settings()) as admin:
        topics.apply(admin, topics.plan(admin, [contract]))
    producer = ProducerSettings(
        own_broker.settings(), role="connector", ack_timeout_s=5.0, request_timeout_ms=3000
    )
    clock = SystemClock()
    outbox = Outbox(
        Router([contract]),
        contract.id,
        writer=lambda: KafkaBatchWriter(producer),
        connector="mds",
        clock=clock,
        backoff=Backoff(initial_s=0.2, max_s=1.0),
    )
    checkpoint = tmp_path / "mds.json"
    since = now_ms() - 30 * 60_000
    settings = MdsSettings(
        base_url=api.base,
        token=TOKEN,
        checkpoint=checkpoint,
        since_ms=since,
        interval_s=1.0,
        lag_ms=0,
        trips=False,
    )
    try:
        async with ClientSession() as session:
            poller = MdsPoller(settings, aiohttp_fetch(session), clock, outbox)
            await poller.poll_once()
            read_to = json.loads(checkpoint.read_text())["events"]["since_ms"]

            own_broker.stop()
            await until(
                lambda: api.fleet.events_between(read_to, (now_ms() // 1000) * 1000),
                60,
                "the provider to have new events",
            )
            second = asyncio.create_task(poller.poll_once())
            await until(lambda: outbox.failures >= 2, 90, "two refused deliveries")
            assert not second.done()  # still trying, not given up
            assert json.loads(checkpoint.read_text())["events"]["since_ms"] == read_to

            own_broker.start()
            await asyncio.wait_for(second, 120)
    finally:
        await outbox.close()
    now_read_to = json.loads(checkpoint.read_text())["events"]["since_ms"]
    assert now_read_to > read_to
    expected = {e["event_id"] for e in api.fleet.events_between(since, now_read_to)}
    print(
        f"\noutage: {outbox.failures} refused deliveries, {len(expected)} events expected, "
        f"{outbox.delivered} records delivered"
    )
    assert raw_ids(own_broker, contract) == expected
