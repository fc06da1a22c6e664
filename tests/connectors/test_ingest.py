"""The Kafka ingest validator against a real broker: 10,000 good + 1,000 bad records.

Every good record must land on ``raw.<c>.vehicle_events`` exactly once, every bad one on the
DLQ with the right reason, the loop must survive all of them, and no value planted in the
input (the ``SENTINEL`` strings) may show up in a DLQ header, a log line or a metric label.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import logging
import struct
import threading
from collections import Counter
from collections.abc import Callable
from typing import Any

import pytest
from kafka import KafkaConsumer, KafkaProducer
from prometheus_client import CollectorRegistry

from broker.kafka.reasons import Reason
from broker.kafka.serde import Schemas, decode, encode
from connectors.ingest import IngestSettings, IngestValidator
from contracts import Contract
from tests.connectors.conftest import NOW_MS, vehicle_event
from tests.connectors.support import ValidatorThread, drain, produce, validate_stream

pytestmark = pytest.mark.integration
GOOD, BAD = 10_000, 1_000
MINUTE = 60_000
SENTINEL = "SENTINEL"  # in every vehicle_id, event_id and provider_id of the input


def _event(i: int, **overrides: Any) -> dict[str, Any]:
    return vehicle_event(
        i,
        event_id=f"{SENTINEL}-e{i:06d}",
        vehicle_id=f"{SENTINEL}-v{i % 700}",
        provider_id=f"{SENTINEL}-p",
        **overrides,
    )


def _avro(contract: Contract, record: dict[str, Any]) -> bytes:
    stream = contract.stream("vehicle_events")
    entry = Schemas.from_contracts([contract]).for_stream(contract, stream)
    return encode(entry.parsed, entry.schema_id, record)


def _bad_kinds(
    contract: Contract, good: list[bytes]
) -> list[tuple[Reason, Callable[[int], bytes]]]:
    avro = lambda i, **kw: _avro(contract, _event(GOOD + i, **kw))  # noqa: E731
    js = lambda i, **kw: json.dumps(_event(GOOD + i, **kw)).encode()  # noqa: E731
    trips_id = Schemas.from_contracts([contract]).for_stream(contract, "trips").schema_id

    def missing(i: int) -> bytes:
        record = _event(GOOD + i)
        del record["timestamp"]
        return json.dumps(record).encode()

    return [
        (Reason.AVRO_TRUNCATED, lambda i: avro(i)[:-7]),
        (Reason.AVRO_TRAILING_BYTES, lambda i: avro(i) + b"\x00\x01"),
        (Reason.AVRO_BAD_MAGIC, lambda i: b"\x01" + avro(i)[1:]),
        (Reason.AVRO_UNKNOWN_SCHEMA, lambda i: b"\x00" + struct.pack(">I", 99) + avro(i)[5:]),
        (Reason.SCHEMA_MISMATCH, lambda i: b"\x00" + struct.pack(">I", trips_id) + avro(i)[5:]),
        (Reason.INVALID_UTF8, lambda i: js(i).replace(b"electric", b"electr\xc3\x28c")),
        (Reason.MALFORMED_JSON, lambda i: js(i)[:-1]),
        (Reason.MISSING_FIELD, missing),
        (Reason.WRONG_TYPE, lambda i: js(i, battery_pct=f"{SENTINEL}-80")),
        (Reason.UNKNOWN_FIELD, lambda i: js(i, colour=SENTINEL)),
        (Reason.OUT_OF_RANGE, lambda i: js(i, lat=95.0 + i * 1e-6)),
        (Reason.OUTSIDE_TERRITORY, lambda i: avro(i, lat=48.85, lon=2.35)),
        (Reason.EVENT_IN_FUTURE, lambda i: js(i, timestamp=NOW_MS + 10 * MINUTE)),
        (Reason.TOO_LATE, lambda i: avro(i, timestamp=NOW_MS - 10 * MINUTE)),
        (Reason.PAYLOAD_TOO_LARGE, lambda i: js(i, trip_id="x" * 70_000)),
        (Reason.DUPLICATE_EVENT, lambda i: good[i * 7]),
    ]


def test_ingest_validator_routes_every_record_once_and_leaks_nothing(
    applied: Contract,
    producer_factory: Callable[..., KafkaProducer],
    consumer_factory: Callable[..., KafkaConsumer],
    kafka_bootstrap: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    # Our loggers at DEBUG; kafka-python's own DEBUG output dumps request bytes by design.
    caplog.set_level(logging.INFO)
    caplog.set_level(logging.DEBUG, logger="connectors")
    caplog.set_level(logging.DEBUG, logger="broker")
    contract = applied
    good_records = [_event(i) for i in range(GOOD)]
    good = [
        json.dumps(r).encode() if i % 2 else _avro(contract, r) for i, r in enumerate(good_records)
    ]
    kinds = _bad_kinds(contract, good)
    bad = [(kinds[i % len(kinds)][0], kinds[i % len(kinds)][1](i)) for i in range(BAD)]
    # DLQ values are cut to a prefix: a record names its payload by the original's SHA-256.
    expected_reason = {hashlib.sha256(payload).hexdigest(): reason for reason, payload in bad}
    assert len(expected_reason) == BAD and len({r for r, _ in bad}) >= 12

    producer = producer_factory(linger_ms=20, max_request_size=2 * 1024 * 1024)
    # Keyed by vehicle, so a duplicate follows its original in the same partition.
    produce(
        producer,
        contract.topic_ingest("vehicle_events"),
        [(r["vehicle_id"].encode(), p) for r, p in zip(good_records, good, strict=True)],
    )
    dup_keys = {p: r["vehicle_id"].encode() for r, p in zip(good_records, good, strict=True)}
    produce(
        producer,
        contract.topic_ingest("vehicle_events"),
        [(dup_keys.get(p, b"bad"), p) for _, p in bad],
    )

    registry = CollectorRegistry()
    validator = IngestValidator(
        [contract],
        kafka_bootstrap,
        group_id=f"v-{contract.id}",
        registry=registry,
        now_ms=lambda: NOW_MS,
        settings=IngestSettings(linger_ms=5),
    )
    running, raw_records, dlq_records = validate_stream(
        validator, consumer_factory, contract, raw=(GOOD, 120), dlq=(BAD, 60)
    )
    assert running.error is None
    assert running.stats is not None and running.stats.consumed == GOOD + BAD

    schemas = Schemas.from_contracts([contract])
    ids = Counter(decode(r.value, schemas)[1]["event_id"] for r in raw_records)
    assert ids == Counter(r["event_id"] for r in good_records)  # each exactly once

    got = Counter()
    for record in dlq_records:
        headers = dict(record.headers)
        original = headers["respublica.original_sha256"].decode()
        assert headers["respublica.reason"] == expected_reason[original].value.encode()
        assert len(record.value) <= 64 * 1024
        assert headers["respublica.source"].startswith(
            contract.topic_ingest("vehicle_events").encode() + b"/"
        )
        assert headers["respublica.connector"] == b"kafka"
        got[Reason(headers["respublica.reason"].decode())] += 1
    assert got == Counter(reason for reason, _ in bad)
    assert Reason.INTERNAL not in running.stats.reasons

    _assert_nothing_leaks(dlq_records, caplog, registry)
    _assert_metrics_reconcile(registry, contract, got)


def _assert_nothing_leaks(
    dlq_records: list[Any], caplog: pytest.LogCaptureFixture, registry: CollectorRegistry
) -> None:
    texts = [f"{key}={value!r}" for r in dlq_records for key, value in r.headers]
    texts += [repr(r.key) for r in dlq_records]
    texts += [rec.getMessage() for rec in caplog.records]
    texts += [repr(sample.labels) for family in registry.collect() for sample in family.samples]
    assert any("respublica.reason" in t for t in texts)
    blob = "\n".join(texts)
    assert SENTINEL not in blob
    assert "95.0" not in blob and "48.85" not in blob  # planted coordinates


def _assert_metrics_reconcile(
    registry: CollectorRegistry, contract: Contract, got: Counter[Reason]
) -> None:
    labels = {"contract": contract.id, "stream": "vehicle_events"}
    ingested = registry.get_sample_value(
        "respublica_events_ingested_total", {**labels, "source": "kafka"}
    )
    assert ingested == GOOD + BAD
    for reason, count in got.items():
        value = registry.get_sample_value(
            "respublica_events_rejected_total", {**labels, "reason": reason.value}
        )
        assert value == count


def test_a_stopped_validator_commits_and_a_restart_resumes_without_loss_or_repeat(
    applied: Contract,
    producer_factory: Callable[..., KafkaProducer],
    consumer_factory: Callable[..., KafkaConsumer],
    kafka_bootstrap: str,
) -> None:
    contract, total = applied, 6_000
    records = [_event(i) for i in range(total)]
    produce(
        producer_factory(),
        contract.topic_ingest("vehicle_events"),
        [(r["vehicle_id"].encode(), json.dumps(r).encode()) for r in records],
    )
    stop_first = threading.Event()
    clock_calls = itertools.count()

    def clock() -> int:
        # Ask the first validator to stop while it is in the middle of its work: the clock
        # is read once per partition batch, so this lands inside the third one.
        if next(clock_calls) == 2:
            stop_first.set()
        return NOW_MS

    def validator(now_ms: Callable[[], int]) -> IngestValidator:
        return IngestValidator(
            [contract],
            kafka_bootstrap,
            group_id=f"v-{contract.id}",
            registry=CollectorRegistry(),
            now_ms=now_ms,
            settings=IngestSettings(max_poll_records=500),
        )

    with ValidatorThread(validator(clock), stop=stop_first) as first:
        assert stop_first.wait(timeout=60)
    assert first.error is None and first.stats is not None
    assert 0 < first.stats.consumed < total  # stopped part-way, after finishing its batch
    raw = consumer_factory(contract.topic_raw("vehicle_events"))
    with ValidatorThread(validator(lambda: NOW_MS)) as second:
        seen = drain(raw, total, 120, lambda: second.error is None)
    assert second.error is None and second.stats is not None
    assert first.stats.consumed + second.stats.consumed == total  # the commit held
    schemas = Schemas.from_contracts([contract])
    ids = Counter(decode(r.value, schemas)[1]["event_id"] for r in seen)
    assert ids == Counter(r["event_id"] for r in records)  # nothing lost, nothing repeated
