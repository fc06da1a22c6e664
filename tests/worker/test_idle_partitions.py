"""Windows close on time when raw partitions are quiet: the validator's heartbeats advance the
watermark of every partition, so events on one partition of four are released on the wall
clock (window end + allowed lateness + delay + a few seconds), not when the others wake up."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from prometheus_client import CollectorRegistry

from broker.kafka.clients import read_partitions
from broker.kafka.settings import as_settings
from connectors.ingest import IngestSettings, IngestValidator
from contracts.model import Contract
from tests.connectors.conftest import vehicle_event
from tests.worker.support import WorkerProcess, read_public, wait_for

pytestmark = pytest.mark.integration

STREAM = "vehicle_events"
WINDOW_MS, LATENESS_MS = 4_000, 2_000
SLACK_S = 5.0  # the bound beyond window end + lateness + delay


def _short_windows(data: dict[str, Any]) -> None:
    for stream in data["streams"]:
        stream["allowed_lateness"] = "PT2S"
    for view in data["views"]:
        if view["name"] == "availability":
            view.update(time_bucket="PT4S", window="PT4S", k=2)


@pytest.fixture
def heartbeating_validator(
    kafka_bootstrap: str,
) -> Iterator[Callable[[Contract], IngestValidator]]:
    stop = threading.Event()
    threads: list[threading.Thread] = []

    def start(contract: Contract) -> IngestValidator:
        settings = IngestSettings(heartbeat_interval_s=0.5, heartbeat_margin_ms=500)
        validator = IngestValidator(
            [contract],
            kafka_bootstrap,
            group_id=f"idle-{contract.id}",
            registry=CollectorRegistry(),
            settings=settings,
        )
        thread = threading.Thread(target=validator.run, args=(stop,), daemon=True)
        thread.start()
        threads.append(thread)
        return validator

    yield start
    stop.set()
    for thread in threads:
        thread.join(timeout=30)


def test_events_on_one_partition_of_four_are_released_on_the_wall_clock(
    contract_factory: Callable[..., Contract],
    worker_factory: Callable[..., WorkerProcess],
    heartbeating_validator: Callable[[Contract], IngestValidator],
    producer_factory: Callable[..., KafkaProducer],
    kafka_bootstrap: str,
) -> None:
    contract = contract_factory("micromobility", partitions=4, edit=_short_windows)
    worker = worker_factory([contract], "idle")
    worker.start()
    validator = heartbeating_validator(contract)
    producer = producer_factory()
    # Both running: a heartbeat on every raw partition, an event through the validator (its
    # group joined), the worker releasing its window. Then the clock starts, at a window
    # boundary.
    wait_for(lambda: min(_raw_ends(kafka_bootstrap, contract)) > 0, 60, "heartbeats on raw")
    now_ms = int(time.time() * 1000)
    warm_up = vehicle_event(10**6, now_ms=now_ms, vehicle_id="veh-quiet", timestamp=now_ms)
    producer.send(contract.topic_ingest(STREAM), json.dumps(warm_up).encode())
    producer.flush()
    wait_for(lambda: validator.stats.accepted >= 1, 60, "the validator's first event")
    wait_for(worker.healthy, 60, "the worker")
    wait_for(  # the warm-up window out: the worker holds every partition and releases
        lambda: bool(read_public(kafka_bootstrap, contract, "availability").windows),
        60,
        "the warm-up window",
    )
    first_ms = (int(time.time() * 1000) // WINDOW_MS + 1) * WINDOW_MS
    time.sleep(max(0.0, first_ms / 1000 - time.time()))
    sent = 0
    while time.time() * 1000 < first_ms + 3 * WINDOW_MS:  # one vehicle: one raw partition
        now_ms = int(time.time() * 1000)
        record = vehicle_event(sent, now_ms=now_ms, vehicle_id="veh-quiet", timestamp=now_ms)
        producer.send(contract.topic_ingest(STREAM), json.dumps(record).encode())
        producer.flush()
        sent += 1
        time.sleep(0.25)
    last_end = (int(time.time() * 1000) // WINDOW_MS) * WINDOW_MS
    windows = {
        (s, s + WINDOW_MS) for s in range(first_ms - first_ms % WINDOW_MS, last_end, WINDOW_MS)
    }
    released_at: dict[tuple[int, int], float] = {}

    def all_released() -> bool:
        assert worker.alive(), worker.log_tail()
        released_at.update(_report_times(kafka_bootstrap, contract))
        return windows <= set(released_at)

    bound_s = (last_end + LATENESS_MS) / 1000 + SLACK_S
    wait_for(all_released, max(10.0, bound_s - time.time() + 30), "every closed window")
    # When each window's report was written (its record's timestamp), after end + lateness.
    delays = {w: round(released_at[w] - (w[1] + LATENESS_MS) / 1000, 1) for w in windows}
    print(f"release delays after window end + lateness (s): {sorted(delays.values())}")
    late = {w: d for w, d in delays.items() if d > SLACK_S}
    assert not late, f"released more than {SLACK_S}s after end + lateness: {late} (all: {delays})"


def _raw_ends(bootstrap: str, contract: Contract) -> list[int]:
    consumer = KafkaConsumer(**as_settings(bootstrap).kafka_python("tests"), group_id=None)
    try:
        topic = contract.topic_raw(STREAM)
        tps = [TopicPartition(topic, p) for p in range(contract.stream(STREAM).partitions)]
        ends = consumer.end_offsets(tps)
        return [int(ends[tp]) for tp in tps]
    finally:
        consumer.close()


def _report_times(bootstrap: str, contract: Contract) -> dict[tuple[int, int], float]:
    """Window -> when its report record was produced (seconds), from the public topic."""
    consumer = KafkaConsumer(
        **as_settings(bootstrap).kafka_python("tests"),
        group_id=None,
        isolation_level="read_committed",
    )
    try:
        tp = TopicPartition(contract.topic_public(contract.view("availability")), 0)
        records = read_partitions(consumer, [tp], timeout_s=30).get(tp, [])
    finally:
        consumer.close()
    out = {}
    for record in records:
        key = json.loads(record.key)
        if key.get("report"):
            out[(key["window_start"], key["window_end"])] = record.timestamp / 1000
    return out
