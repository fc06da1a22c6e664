"""A provider with a stock Confluent client reaches raw: confluent-kafka's ``AvroSerializer``
(``use.latest.version``, no registration) against ``respublica schemas serve``, a
``confluent_kafka.Producer`` on the secure broker (SASL_SSL, SCRAM) to ``ingest.<c>.<s>``, and
the ingest validator: every record reaches ``raw.<c>.<s>`` as sent, under the same schema id.
"""

from __future__ import annotations

import subprocess
import sys
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import Producer
from confluent_kafka.schema_registry import SchemaRegistryClient
from confluent_kafka.schema_registry.avro import AvroSerializer
from confluent_kafka.serialization import MessageField, SerializationContext
from kafka import KafkaConsumer
from prometheus_client import CollectorRegistry

from broker.deadline import wait_for
from broker.kafka.local import free_port
from broker.kafka.serde import Schemas, decode, read_header, schema_id
from broker.kafka.settings import KafkaSettings, as_settings
from connectors.ingest import IngestSettings, IngestValidator
from contracts import Contract
from tests.connectors.conftest import NOW_MS, vehicle_event
from tests.connectors.support import ValidatorThread, drain

pytestmark = pytest.mark.integration

STREAM = "vehicle_events"
EVENTS = 50
ROOT = Path(__file__).resolve().parents[2]


def librdkafka_config(settings: KafkaSettings) -> dict[str, Any]:
    """What the session's credentials (``KafkaSettings``) are to librdkafka."""
    config: dict[str, Any] = {
        "bootstrap.servers": settings.bootstrap,
        "security.protocol": settings.security_protocol,
        "client.id": settings.client_id("stock-provider"),
    }
    if settings.sasl_mechanism is not None and settings.password is not None:
        config["sasl.mechanism"] = settings.sasl_mechanism
        config["sasl.username"] = settings.username
        config["sasl.password"] = settings.password.get_secret_value()
    if settings.tls:
        if settings.ssl_cafile is not None:
            config["ssl.ca.location"] = str(settings.ssl_cafile)
        config["ssl.endpoint.identification.algorithm"] = (
            "https" if settings.ssl_check_hostname else "none"
        )
    return config


@pytest.fixture
def registry_url(applied: Contract) -> Iterator[str]:
    """``respublica schemas serve`` for the contract, in its own process."""
    assert applied.source is not None
    port = free_port()
    process = subprocess.Popen(  # noqa: S603 - our own CLI
        [
            sys.executable,
            "-m",
            "broker.cli",
            "schemas",
            "serve",
            "--contracts",
            str(applied.source),
            "--port",
            str(port),
        ],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"

    def up() -> bool:
        assert process.poll() is None, "the registry exited"
        try:
            with urllib.request.urlopen(f"{url}/schemas/types", timeout=2):  # noqa: S310
                return True
        except OSError:
            return False

    try:
        wait_for(up, 60, "the schema registry API", 0.2)
        yield url
    finally:
        process.terminate()
        process.wait(timeout=30)


def test_confluent_avro_serializer_records_reach_raw_through_the_validator(
    applied: Contract,
    registry_url: str,
    kafka_bootstrap: str,
    consumer_factory: Callable[..., KafkaConsumer],
) -> None:
    contract = applied
    topic = contract.topic_ingest(STREAM)
    serializer = AvroSerializer(
        SchemaRegistryClient({"url": registry_url}),
        conf={"use.latest.version": True, "auto.register.schemas": False},
    )
    context = SerializationContext(topic, MessageField.VALUE)
    events = [vehicle_event(i) for i in range(EVENTS)]
    producer = Producer(librdkafka_config(as_settings(kafka_bootstrap)))
    errors: list[Any] = []
    for event in events:
        producer.produce(
            topic,
            key=event["vehicle_id"].encode(),
            value=serializer(event, context),
            on_delivery=lambda err, _msg: errors.append(err) if err else None,
        )
    assert producer.flush(60) == 0 and errors == []

    validator = IngestValidator(
        [contract],
        kafka_bootstrap,
        group_id=f"stock-{contract.id}",
        registry=CollectorRegistry(),
        now_ms=lambda: NOW_MS,
        settings=IngestSettings(linger_ms=5),
    )
    raw_consumer = consumer_factory(contract.topic_raw(STREAM))
    dlq_consumer = consumer_factory(contract.topic_dlq(STREAM))
    with ValidatorThread(validator) as running:
        alive = lambda: running.error is None  # noqa: E731
        raw = drain(raw_consumer, EVENTS, 120, alive)
        # Whatever the DLQ got, it got by now (its records were written before raw's last).
        rejected = drain(dlq_consumer, 1, 2, alive)
    assert running.error is None
    assert running.stats is not None and running.stats.consumed == EVENTS
    assert rejected == [], [dict(r.headers).get("respublica.reason") for r in rejected]

    expected_id = schema_id(contract.stream(STREAM).raw_schema)
    assert {read_header(r.value) for r in raw} == {expected_id}
    schemas = Schemas.from_contracts([contract])
    by_id = {e["event_id"]: e for e in events}
    decoded = [decode(r.value, schemas)[1] for r in raw]
    assert sorted(d["event_id"] for d in decoded) == sorted(by_id)
    for record in decoded:
        assert record == by_id[record["event_id"]]  # as the provider sent it
