"""A provider writes a record of about 1 MiB to its own ingest topic, between good records.

Before, the validator rejected it (PAYLOAD_TOO_LARGE), Kafka refused its full copy on the DLQ
(MessageSizeTooLarge), the batch failed uncommitted and the shared validator restarted into
the same record forever. Now the DLQ holds a bounded prefix with the original size and hash,
and every good record of the batch reaches raw exactly once.
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from collections.abc import Callable

import pytest
from kafka import KafkaConsumer, KafkaProducer
from prometheus_client import CollectorRegistry

from broker.kafka.serde import Schemas, decode
from connectors.ingest import IngestSettings, IngestValidator
from connectors.validate import DLQ_MAX_VALUE_BYTES, H_ORIGINAL_BYTES, H_ORIGINAL_SHA256
from contracts import Contract
from tests.connectors.conftest import NOW_MS, vehicle_event
from tests.connectors.support import produce, validate_stream

pytestmark = pytest.mark.integration
GOOD = 200
HUGE_BYTES = 1_048_400  # just under the broker's default record limit (1,048,588 bytes)


def test_a_one_mebibyte_record_neither_stops_ingestion_nor_loses_good_records(
    applied: Contract,
    producer_factory: Callable[..., KafkaProducer],
    consumer_factory: Callable[..., KafkaConsumer],
    kafka_bootstrap: str,
) -> None:
    contract = applied
    topic = contract.topic_ingest("vehicle_events")
    good = [vehicle_event(i) for i in range(GOOD)]
    huge = json.dumps({**vehicle_event(GOOD), "trip_id": "x" * HUGE_BYTES}).encode()[:HUGE_BYTES]
    payloads = [(r["vehicle_id"].encode(), json.dumps(r).encode()) for r in good]
    payloads.insert(GOOD // 2, (b"huge", huge))
    producer = producer_factory(linger_ms=20, max_request_size=2 * 1024 * 1024)
    produce(producer, topic, payloads)

    validator = IngestValidator(
        [contract],
        kafka_bootstrap,
        group_id=f"v-{contract.id}",
        registry=CollectorRegistry(),
        now_ms=lambda: NOW_MS,
        settings=IngestSettings(linger_ms=5),
    )
    running, raw_records, dlq_records = validate_stream(
        validator, consumer_factory, contract, raw=(GOOD, 60), dlq=(1, 30)
    )
    assert running.error is None, repr(running.error)

    schemas = Schemas.from_contracts([contract])
    ids = Counter(decode(r.value, schemas)[1]["event_id"] for r in raw_records)
    assert ids == Counter(r["event_id"] for r in good)  # every good record, exactly once
    [dead] = dlq_records
    headers = dict(dead.headers)
    assert headers["respublica.reason"] == b"PAYLOAD_TOO_LARGE"
    assert len(dead.value) == DLQ_MAX_VALUE_BYTES and huge.startswith(dead.value)
    assert headers[H_ORIGINAL_BYTES] == str(len(huge)).encode()
    assert headers[H_ORIGINAL_SHA256] == hashlib.sha256(huge).hexdigest().encode()
