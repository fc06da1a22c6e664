"""Proof that the test harness talks to a real broker, with three different clients."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path

import pytest
from aiokafka import AIOKafkaConsumer
from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer
from kafka.admin import ConfigResource, ConfigResourceType

from broker.kafka.settings import as_settings

pytestmark = pytest.mark.integration

RECORDS = 10_000
KEYS = 37


def test_admin_creates_a_topic(
    topic_factory: Callable[..., str], kafka_admin: KafkaAdminClient
) -> None:
    name = topic_factory("harness", partitions=3, **{"retention.ms": "3600000"})
    assert name in kafka_admin.list_topics()
    described = kafka_admin.describe_topics([name])[0]
    assert len(described["partitions"]) == 3
    configs = kafka_admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, name)])
    assert configs["topic"][name]["retention.ms"]["value"] == "3600000"


def test_kafka_python_produces_and_aiokafka_reads_in_order(
    kafka_bootstrap: str,
    topic_factory: Callable[..., str],
    producer_factory: Callable[..., KafkaProducer],
) -> None:
    topic = topic_factory("harness", partitions=4)
    producer = producer_factory()
    for i in range(RECORDS):
        key = f"k{i % KEYS}".encode()
        producer.send(topic, key=key, value=str(i).encode())
    producer.flush(timeout=60)

    received = asyncio.run(_read_all(kafka_bootstrap, topic, RECORDS))
    assert len(received) == RECORDS
    per_key: dict[bytes, list[int]] = defaultdict(list)
    for key, value in received:
        per_key[key].append(value)
    assert len(per_key) == KEYS
    for values in per_key.values():
        assert values == sorted(values), "records of one key arrived out of order"
    assert sorted(v for _, v in received) == list(range(RECORDS))


async def _read_all(bootstrap: str, topic: str, expected: int) -> list[tuple[bytes, int]]:
    consumer = AIOKafkaConsumer(
        topic,
        **as_settings(bootstrap).aiokafka("tests"),
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        group_id=None,
    )
    await consumer.start()
    out: list[tuple[bytes, int]] = []
    deadline = time.monotonic() + 60
    try:
        while len(out) < expected and time.monotonic() < deadline:
            batches = await consumer.getmany(timeout_ms=1000, max_records=5000)
            for records in batches.values():
                out.extend((r.key, int(r.value)) for r in records)  # type: ignore[arg-type]
    finally:
        await consumer.stop()
    return out


def test_faust_agent_reads_one_topic_and_writes_another(
    kafka_bootstrap: str,
    tmp_path: Path,
    topic_factory: Callable[..., str],
    producer_factory: Callable[..., KafkaProducer],
    consumer_factory: Callable[..., KafkaConsumer],
) -> None:
    source = topic_factory("faust-in")
    sink = topic_factory("faust-out")
    env = dict(
        os.environ,
        ECHO_BOOTSTRAP=kafka_bootstrap,
        ECHO_SOURCE=source,
        ECHO_SINK=sink,
        ECHO_DATADIR=str(tmp_path),
    )
    app = Path(__file__).with_name("faust_echo_app.py")
    worker = subprocess.Popen(
        [sys.executable, str(app), "worker", "--loglevel", "warn", "--without-web"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        producer = producer_factory()
        for i in range(20):
            producer.send(source, key=b"k", value=f"hello-{i}".encode())
        producer.flush()
        consumer = consumer_factory(sink)
        got: list[bytes] = []
        deadline = time.monotonic() + 90
        while len(got) < 20 and time.monotonic() < deadline:
            for records in consumer.poll(timeout_ms=1000).values():
                got.extend(r.value for r in records)
            assert worker.poll() is None, _output(worker)
        assert got == [f"HELLO-{i}".encode() for i in range(20)]
    finally:
        worker.terminate()
        try:
            worker.wait(timeout=30)
        except subprocess.TimeoutExpired:
            worker.kill()
            worker.wait()


def _output(proc: subprocess.Popen[bytes]) -> str:
    proc.kill()
    out, _ = proc.communicate()
    return out.decode(errors="replace")[-3000:]
