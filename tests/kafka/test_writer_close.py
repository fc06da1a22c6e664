"""Closing the gateway's producer after a batch Kafka will never take (its topic deleted, as
``respublica contracts apply`` does for a removed contract): the write fails with
``KafkaUnavailable`` within its deadline, and ``close`` returns once aiokafka expires the batch
(the topic leaves the metadata, so the partition has no leader), well within the gateway's own
bound (``broker.ingest.producer.CLOSE_TIMEOUT_S``, tests/ingest/test_producer_close.py)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

import pytest
from kafka import KafkaAdminClient

from broker.kafka.writer import KafkaBatchWriter, KafkaUnavailable, OutRecord, ProducerSettings

pytestmark = pytest.mark.integration


async def test_close_returns_when_a_batch_targets_a_deleted_topic(
    kafka_bootstrap: str,
    kafka_admin: KafkaAdminClient,
    topic_factory: Callable[..., str],
) -> None:
    topic = topic_factory("writer-close")
    writer = KafkaBatchWriter(
        ProducerSettings(kafka_bootstrap, ack_timeout_s=3.0, request_timeout_ms=2_000)
    )
    await writer.write([OutRecord(topic, b"k", b"first", [])])
    kafka_admin.delete_topics([topic])
    deadline = time.monotonic() + 30
    while topic in kafka_admin.list_topics():
        assert time.monotonic() < deadline, "the topic was not deleted"
        await asyncio.sleep(0.1)
    with pytest.raises(KafkaUnavailable):
        await writer.write([OutRecord(topic, b"k", b"second", [])])
    started = time.monotonic()
    await asyncio.wait_for(writer.close(), 60)
    assert time.monotonic() - started < 30
