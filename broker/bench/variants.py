"""The bench's baselines, each run in its own process so CPU and peak RSS are its own.

* ``b1`` passthrough: consume the raw topic, produce the same bytes, with the worker's own
  client settings (``broker.kafka.clients.WorkerClients``), poll size and flush/commit interval;
* ``b2`` serde: b1 plus Avro decode and re-encode of every record;
* ``b1a`` passthrough on the worker loops' consumer (aiokafka behind
  ``broker.kafka.aioconsumer.AioConsumer``), b1 otherwise: b1 stays on kafka-python, the fixed
  yardstick of issue 17.

Run as ``python -m broker.bench.variants b1|b2|b1a --bootstrap B --source T --sink T --events N
--schema FILE --result FILE``; the result is a JSON object (seconds, cpu_seconds,
peak_rss_mb, batch latency quantiles).
"""

from __future__ import annotations

import argparse
import json
import os
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import fastavro
from kafka import KafkaProducer, TopicPartition
from kafka.structs import OffsetAndMetadata

from broker.deadline import Deadline
from broker.kafka.clients import RAW_FETCH_BYTES, LoopClient, WorkerClients
from broker.kafka.serde import decode_body, encode, read_header
from broker.kafka.settings import KafkaSettings
from broker.processes import peak_rss_mb

MAX_RECORDS = 2000
FLUSH_INTERVAL_S = 1.0
DEADLINE_S = 900.0

Transform = Callable[[bytes], bytes]


def serde_roundtrip(schema: dict[str, Any]) -> Transform:
    """Decode a framed Avro value and encode it again (B2's only extra work)."""
    parsed = fastavro.parse_schema(schema)

    def transform(value: bytes) -> bytes:
        if not value:  # an end-of-stream control record: passed on as it is
            return value
        sid = read_header(value)
        return encode(parsed, sid, decode_body(value, parsed))

    return transform


def _flush_and_commit(
    producer: KafkaProducer, consumer: Any, positions: dict[TopicPartition, int]
) -> None:
    producer.flush()
    consumer.commit({tp: OffsetAndMetadata(off, "", -1) for tp, off in positions.items()})


def run(
    bootstrap: str,
    source: str,
    sink: str,
    events: int,
    transform: Transform | None,
    client: LoopClient | None = None,
) -> dict[str, Any]:
    """Move ``events`` records from ``source`` to ``sink``; returns the measurements.

    ``client``: consume with the worker loops' consumer on that client (``b1a``); ``None``:
    kafka-python's ``KafkaConsumer`` as B1 always did.
    """
    settings = WorkerClients(
        KafkaSettings.load(bootstrap=bootstrap),
        "bench",
        f"bench-{uuid.uuid4().hex[:8]}",
        client or "kafka-python",
    )
    options: dict[str, Any] = {
        "group_id": settings.group,
        "max_poll_records": MAX_RECORDS,
        "max_partition_fetch_bytes": RAW_FETCH_BYTES,
    }
    consumer: Any = (
        settings.consumer(**options) if client is None else settings.loop_consumer(**options)
    )
    producer = settings.producer()
    # Explicit assignment: no group join to wait for (kafka-python 3.0 can leave a join
    # stuck under short polls); offsets are still committed under the group id.
    partitions = [TopicPartition(source, p) for p in sorted(consumer.partitions_for_topic(source))]
    consumer.assign(partitions)
    consumer.seek_to_beginning(*partitions)
    seen, positions, batch_ms = 0, {}, []
    start = cpu0 = 0.0
    last_flush = time.monotonic()
    deadline = Deadline(DEADLINE_S)
    while seen < events and not deadline.expired():
        polled = consumer.poll(timeout_ms=1000)
        if polled and not start:
            start, cpu0 = time.perf_counter(), time.process_time()
        t_batch = time.perf_counter()
        for tp, records in polled.items():
            for record in records:
                value = record.value if transform is None else transform(record.value)
                producer.send(sink, key=record.key, value=value)
            positions[tp] = records[-1].offset + 1
            seen += len(records)
        if time.monotonic() - last_flush >= FLUSH_INTERVAL_S or seen >= events:
            _flush_and_commit(producer, consumer, positions)
            last_flush = time.monotonic()
        if polled:
            batch_ms.append((time.perf_counter() - t_batch) * 1000)
    _flush_and_commit(producer, consumer, positions)
    elapsed = time.perf_counter() - start
    result = {
        "events": seen,
        "seconds": elapsed,
        "cpu_seconds": time.process_time() - cpu0,
        "peak_rss_mb": peak_rss_mb(os.getpid()),  # VmHWM: ru_maxrss keeps the parent's peak
        "batch_ms_p50": _quantile(batch_ms, 0.5),
        "batch_ms_p99": _quantile(batch_ms, 0.99),
    }
    producer.close()
    consumer.close(autocommit=False)
    return result


def _quantile(values: list[float], q: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m broker.bench.variants")
    parser.add_argument("variant", choices=("b1", "b2", "b1a"))
    parser.add_argument("--bootstrap", required=True)
    parser.add_argument("--source", required=True)
    parser.add_argument("--sink", required=True)
    parser.add_argument("--events", type=int, required=True)
    parser.add_argument("--schema", type=Path, required=True)
    parser.add_argument("--result", type=Path, required=True)
    args = parser.parse_args()
    transform = (
        serde_roundtrip(json.loads(args.schema.read_text())) if args.variant == "b2" else None
    )
    client: LoopClient | None = "aiokafka" if args.variant == "b1a" else None
    result = run(args.bootstrap, args.source, args.sink, args.events, transform, client)
    args.result.write_text(json.dumps(result))


if __name__ == "__main__":
    main()
