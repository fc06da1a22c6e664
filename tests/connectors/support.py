"""Kafka helpers for connector tests: a validator in a thread, draining, producing."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

from kafka import KafkaConsumer, KafkaProducer

from broker.kafka.internal import heartbeat_floor
from connectors.ingest import IngestStats, IngestValidator
from contracts.model import Contract


class ValidatorThread:
    """Runs an ``IngestValidator`` in a thread and keeps whatever it raised."""

    def __init__(self, validator: IngestValidator, *, stop: threading.Event | None = None) -> None:
        self.validator = validator
        self.stop = stop if stop is not None else threading.Event()
        self.error: BaseException | None = None
        self.stats: IngestStats | None = None
        self._thread = threading.Thread(target=self._run, name="ingest-validator")

    def _run(self) -> None:
        try:
            self.stats = self.validator.run(self.stop)
        except BaseException as exc:  # reported by the test, not swallowed
            self.error = exc

    def __enter__(self) -> ValidatorThread:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self._thread.join(timeout=60)
        assert not self._thread.is_alive()


def drain(
    consumer: KafkaConsumer, want: int, deadline_s: float, alive: Callable[[], bool]
) -> list[Any]:
    """Records until ``want`` arrived or the deadline passed (a condition, not a sleep).

    The validator's heartbeats (empty control records on every raw partition) are left out.
    """
    records: list[Any] = []
    deadline = time.monotonic() + deadline_s
    while len(records) < want and time.monotonic() < deadline and alive():
        for batch in consumer.poll(timeout_ms=500).values():
            records += [r for r in batch if heartbeat_floor(r.headers or ()) is None]
    return records


def produce(producer: KafkaProducer, topic: str, payloads: list[tuple[bytes, bytes]]) -> None:
    for key, value in payloads:
        producer.send(topic, key=key, value=value)
    producer.flush(timeout=60)


def validate_stream(
    validator: IngestValidator,
    consumer_factory: Callable[..., KafkaConsumer],
    contract: Contract,
    *,
    raw: tuple[int, float],
    dlq: tuple[int, float],
) -> tuple[ValidatorThread, list[Any], list[Any]]:
    """Run the validator until ``raw`` = (records, seconds) reached raw and ``dlq`` the DLQ
    of ``vehicle_events`` (or it failed); returns the finished thread and both records."""
    raw_consumer = consumer_factory(contract.topic_raw("vehicle_events"))
    dlq_consumer = consumer_factory(contract.topic_dlq("vehicle_events"))
    with ValidatorThread(validator) as running:
        alive = lambda: running.error is None  # noqa: E731
        raw_records = drain(raw_consumer, raw[0], raw[1], alive)
        dlq_records = drain(dlq_consumer, dlq[0], dlq[1], alive)
    return running, raw_records, dlq_records
