"""The gateway's watermark heartbeats: windows of streams fed only over HTTP close on time in
quiet hours, as with the validator's (``connectors.heartbeat``, docs/architecture.md)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

import pytest
from kafka import KafkaAdminClient, KafkaConsumer, TopicPartition

from broker.kafka import topics
from broker.kafka.internal import heartbeat_floor
from broker.kafka.writer import KafkaBatchWriter, ProducerSettings
from contracts import Contract
from tests.ingest.conftest import NOW_MS, ClientFactory, MemoryWriter

MARGIN_MS = 2_000


def _floors(records: list[object]) -> dict[tuple[str, int], int]:
    found: dict[tuple[str, int], int] = {}
    for record in records:
        floor = heartbeat_floor(record.headers)  # type: ignore[attr-defined]
        if floor is not None:
            found[(record.topic, record.partition)] = floor  # type: ignore[attr-defined]
    return found


async def test_every_raw_partition_gets_a_heartbeat_at_now_minus_lateness_and_margin(
    gateway_client: ClientFactory, contract_copy: Callable[..., Contract]
) -> None:
    contract = contract_copy()
    writer = MemoryWriter()
    await gateway_client([contract], writer, heartbeat_interval_s=0.05)
    expected = {
        (contract.topic_raw(s), p): NOW_MS
        - int(s.allowed_lateness.total_seconds() * 1000)
        - MARGIN_MS
        for s in contract.streams
        for p in range(s.partitions)
    }
    deadline = time.monotonic() + 10
    while _floors(writer.records) != expected:
        assert time.monotonic() < deadline, _floors(writer.records)
        await asyncio.sleep(0.05)


async def test_no_heartbeat_unless_configured(
    gateway_client: ClientFactory, contract_copy: Callable[..., Contract]
) -> None:
    writer = MemoryWriter()
    await gateway_client([contract_copy()], writer)
    await asyncio.sleep(0.3)
    assert writer.records == []


@pytest.mark.integration
async def test_heartbeats_reach_every_raw_partition_on_the_broker(
    kafka_bootstrap: str,
    kafka_admin: KafkaAdminClient,
    gateway_client: ClientFactory,
    contract_copy: Callable[..., Contract],
    consumer_factory: Callable[..., KafkaConsumer],
) -> None:
    contract = contract_copy()
    try:
        await _heartbeats_on_the_broker(kafka_bootstrap, gateway_client, contract, consumer_factory)
    finally:
        kafka_admin.delete_topics([spec.name for spec in topics.contract_topics(contract)])


async def _heartbeats_on_the_broker(
    kafka_bootstrap: str,
    gateway_client: ClientFactory,
    contract: Contract,
    consumer_factory: Callable[..., KafkaConsumer],
) -> None:
    with topics.TopicAdmin(kafka_bootstrap) as admin:
        topics.apply(admin, topics.plan(admin, [contract]))
    writer = KafkaBatchWriter(ProducerSettings(kafka_bootstrap))
    await gateway_client([contract], writer, heartbeat_interval_s=0.2)
    stream = contract.stream("vehicle_events")
    consumer = consumer_factory()
    tps = [TopicPartition(contract.topic_raw(stream), p) for p in range(stream.partitions)]
    consumer.assign(tps)
    consumer.seek_to_beginning(*tps)
    seen: set[int] = set()
    deadline = time.monotonic() + 60
    while seen != {tp.partition for tp in tps}:
        assert time.monotonic() < deadline, f"heartbeats only on {sorted(seen)}"
        polled = await asyncio.to_thread(consumer.poll, 500)
        for tp, records in polled.items():
            if any(heartbeat_floor(r.headers or ()) is not None for r in records):
                seen.add(tp.partition)
