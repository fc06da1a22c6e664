"""Throughput of the ingest validator, ingest -> raw (opt-in: ``RESPUBLICA_BENCH=1``).

Prints events/s for JSON and Avro input; asserts correctness only, never timing.
Run: ``RESPUBLICA_BENCH=1 .venv/bin/python -m pytest tests/connectors/test_ingest_bench.py -s``
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Callable

import pytest
from kafka import KafkaProducer
from prometheus_client import CollectorRegistry

from broker.kafka.serde import Schemas, encode
from connectors.ingest import IngestValidator
from contracts import Contract
from tests.connectors.conftest import NOW_MS, vehicle_event

pytestmark = [
    pytest.mark.bench,
    pytest.mark.skipif(
        os.environ.get("RESPUBLICA_BENCH") != "1",
        reason="throughput benchmark: set RESPUBLICA_BENCH=1",
    ),
]
EVENTS = int(os.environ.get("RESPUBLICA_BENCH_EVENTS", "200000"))


@pytest.mark.parametrize("fmt", ["json", "avro"])
def test_validator_throughput(
    fmt: str,
    applied: Contract,
    producer_factory: Callable[..., KafkaProducer],
    kafka_bootstrap: str,
) -> None:
    entry = Schemas.from_contracts([applied]).for_stream(applied, "vehicle_events")
    producer = producer_factory(linger_ms=50, batch_size=512 * 1024)
    topic = applied.topic_ingest("vehicle_events")
    for i in range(EVENTS):
        record = vehicle_event(i, timestamp=NOW_MS - 1000 - i % 200_000)
        value = (
            json.dumps(record).encode()
            if fmt == "json"
            else encode(entry.parsed, entry.schema_id, record)
        )
        producer.send(topic, key=record["vehicle_id"].encode(), value=value)
    producer.flush(timeout=120)

    validator = IngestValidator(
        [applied],
        kafka_bootstrap,
        group_id=f"bench-{applied.id}",
        registry=CollectorRegistry(),
        now_ms=lambda: NOW_MS,
    )
    cpu_before = time.process_time()  # all threads of this process: the client's I/O too
    stats = validator.run(threading.Event(), max_idle_s=3.0)
    cpu_s = time.process_time() - cpu_before
    assert stats.consumed == EVENTS and stats.rejected == 0
    # Wall-clock rate depends on what else the box runs (the broker shares its cores);
    # events per CPU-second of the validator process is the steadier figure.
    print(
        f"\n{fmt}: {stats.consumed} events in {stats.batches} batches, "
        f"{stats.events_per_s:,.0f} events/s ingest -> raw (wall), "
        f"{stats.consumed / cpu_s:,.0f} events per CPU-second of the validator"
    )
