"""The raw consumer alone: CPU per record of kafka-python and of aiokafka on the same topic.

What a raw loop on aiokafka would save (docs/benchmarks.md, issue 17): both clients read the
bench's preloaded vehicle events with the worker's fetch size and poll size, no decoding, and
report records/s and CPU µs per record from their first non-empty poll, alternating::

    python -m broker.bench.consumers --events 200000 --runs 2

It uses ``KAFKA_BOOTSTRAP`` or starts a throw-away local broker, like ``respublica bench``.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

from aiokafka import AIOKafkaConsumer
from aiokafka.structs import TopicPartition as AioTopicPartition
from kafka import TopicPartition

from broker.bench.preload import load_source, preload
from broker.deadline import Deadline
from broker.kafka.clients import RAW_FETCH_BYTES, WorkerClients
from broker.kafka.local import job_cluster
from broker.kafka.settings import KafkaSettings
from broker.processes import BenchError

MAX_RECORDS = 2000
DEADLINE_S = 600.0


@dataclass(frozen=True)
class Reading:
    """One client reading a topic to its end."""

    client: str
    records: int
    seconds: float
    cpu_seconds: float

    def line(self) -> str:
        rate = self.records / self.seconds if self.seconds else 0.0
        cpu = 1e6 * self.cpu_seconds / self.records if self.records else 0.0
        return f"{self.client:<13}{rate:>12,.0f} records/s{cpu:>8.1f} µs CPU/record"


def read_kafka_python(kafka: KafkaSettings, topic: str, partitions: int, total: int) -> Reading:
    """kafka-python 3.0, configured as the worker's raw consumer."""
    clients = WorkerClients(kafka, "bench", f"bench-{uuid.uuid4().hex[:8]}")
    consumer = clients.consumer(
        group_id=None, max_poll_records=MAX_RECORDS, max_partition_fetch_bytes=RAW_FETCH_BYTES
    )
    try:
        tps = [TopicPartition(topic, p) for p in range(partitions)]
        consumer.assign(tps)
        consumer.seek_to_beginning(*tps)
        seen, start, deadline = 0, (0.0, 0.0), Deadline(DEADLINE_S)
        while seen < total and not deadline.expired():
            polled = consumer.poll(timeout_ms=1000)
            if polled and not seen:
                start = (time.perf_counter(), time.process_time())
            seen += sum(len(records) for records in polled.values())
        return _reading("kafka-python", seen, total, start)
    finally:
        consumer.close(autocommit=False)


async def _read_aiokafka(kafka: KafkaSettings, topic: str, partitions: int, total: int) -> Reading:
    consumer = AIOKafkaConsumer(
        **kafka.aiokafka("bench"),
        group_id=None,
        enable_auto_commit=False,
        isolation_level="read_committed",
        max_partition_fetch_bytes=RAW_FETCH_BYTES,
        auto_offset_reset="earliest",
    )
    await consumer.start()
    try:
        consumer.assign([AioTopicPartition(topic, p) for p in range(partitions)])
        await consumer.seek_to_beginning()
        seen, start, deadline = 0, (0.0, 0.0), Deadline(DEADLINE_S)
        while seen < total and not deadline.expired():
            polled = await consumer.getmany(timeout_ms=1000, max_records=MAX_RECORDS)
            if polled and not seen:
                start = (time.perf_counter(), time.process_time())
            seen += sum(len(records) for records in polled.values())
        return _reading("aiokafka", seen, total, start)
    finally:
        await consumer.stop()


def read_aiokafka(kafka: KafkaSettings, topic: str, partitions: int, total: int) -> Reading:
    """aiokafka (C record parsing), with the same fetch and poll sizes."""
    return asyncio.run(_read_aiokafka(kafka, topic, partitions, total))


def _reading(client: str, seen: int, total: int, start: tuple[float, float]) -> Reading:
    if seen < total:
        msg = f"{client} read {seen} of {total} records within {DEADLINE_S:.0f} s"
        raise BenchError(msg)
    return Reading(client, seen, time.perf_counter() - start[0], time.process_time() - start[1])


def compare(kafka: KafkaSettings, events: int, runs: int, workdir: Path) -> list[Reading]:
    """Preload ``events`` vehicle events, then read them ``runs`` times with each client."""
    inp = preload(kafka.bootstrap, workdir, load_source(None, events), partitions=4)
    stream = inp.contract.stream(inp.main_stream)
    topic, total = inp.contract.topic_raw(stream), inp.main_events + stream.partitions
    out = []
    for _ in range(runs):
        out.append(read_kafka_python(kafka, topic, stream.partitions, total))
        out.append(read_aiokafka(kafka, topic, stream.partitions, total))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m broker.bench.consumers")
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--runs", type=int, default=2)
    args = parser.parse_args()
    with job_cluster("bench") as (kafka, _), tempfile.TemporaryDirectory() as workdir:
        os.environ.update(kafka.environ())  # the preload names the cluster by its address
        for reading in compare(kafka, args.events, args.runs, Path(workdir)):
            print(reading.line(), flush=True)


if __name__ == "__main__":
    main()
