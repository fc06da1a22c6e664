"""Helpers of the audit tests: rejected records through the validator, forged public records."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable
from typing import Any

from kafka import KafkaProducer

from broker.kafka import publish
from broker.kafka.serde import Schemas, encode, schema_id
from connectors.base import Rejected
from connectors.validate import StreamValidator, dlq_record
from contracts.model import Contract
from contracts.policy_hash import short_policy_hash

Headers = list[tuple[str, bytes]]


def bad_payloads(template: dict[str, Any], n: int) -> list[bytes]:
    """``n`` payloads the validator refuses, cycling through four different reasons."""
    kinds = [
        lambda i: b"{not json " + str(i).encode(),
        lambda i: json.dumps({k: v for k, v in template.items() if k != "vehicle_id"}).encode(),
        lambda i: json.dumps({**template, "lat": 48.85, "lon": 2.35}).encode(),  # Paris
        lambda i: json.dumps({**template, "colour": "red"}).encode(),
    ]
    return [kinds[i % len(kinds)](i) for i in range(n)]


def produce_rejected(
    producer: KafkaProducer, contract: Contract, stream: str, payloads: Iterable[bytes], now_ms: int
) -> Counter[str]:
    """Validate payloads like the ingest validator; send each refusal to the DLQ, by reason."""
    validator = StreamValidator(contract, stream, schemas=Schemas.from_contracts([contract]))
    reasons: Counter[str] = Counter()
    for i, payload in enumerate(payloads):
        outcome = validator.validate(payload, now_ms=now_ms, connector="test", source=f"test/{i}")
        assert isinstance(outcome, Rejected), "a bad payload was accepted"
        key, value, headers = dlq_record(
            payload,
            outcome,
            contract=contract,
            stream=stream,
            connector="test",
            source=f"test/{i}",
            now_ms=now_ms,
        )
        producer.send(contract.topic_dlq(stream), key=key, value=value, headers=headers)
        reasons[outcome.reason.value] += 1
    producer.flush(timeout=60)
    return reasons


def public_headers(contract: Contract, window: tuple[int, int]) -> Headers:
    """The headers the worker puts on a release record."""
    return [
        (publish.H_CONTRACT, contract.id.encode()),
        (publish.H_CONTRACT_VERSION, str(contract.version).encode()),
        (publish.H_POLICY_HASH, short_policy_hash(contract).encode()),
        (publish.H_KEY_IDS, f"{contract.id}:0".encode()),
        (publish.H_WINDOW_START, str(window[0]).encode()),
        (publish.H_WINDOW_END, str(window[1]).encode()),
    ]


def genuine_group(
    contract: Contract, window: tuple[int, int], cell: str, n: int = 12
) -> tuple[bytes, bytes]:
    """A well-formed availability group record: (key, value)."""
    schema = publish.release_schema(contract, contract.view("availability"))
    row = {
        "window_start": window[0],
        "window_end": window[1],
        "cell": cell,
        "events": n,
        "vehicles": n,
    }
    value = encode(_parsed(schema), schema_id(schema), row)
    key = publish.canonical_json(
        {"window_start": window[0], "window_end": window[1], "group": {"cell": cell}}
    )
    return key, value


def forged_groups(
    contract: Contract, window: tuple[int, int], cell: str
) -> list[tuple[bytes, bytes]]:
    """Three ways of publishing more than the view: a schema with an extra measure, extra
    bytes after the view's fields under the view's own schema id, an extra key dimension."""
    schema = publish.release_schema(contract, contract.view("availability"))
    wider = {**schema, "fields": [*schema["fields"], {"name": "battery_mean", "type": "double"}]}
    row = {
        "window_start": window[0],
        "window_end": window[1],
        "cell": cell,
        "events": 12,
        "vehicles": 12,
        "battery_mean": 61.5,
    }
    key = publish.canonical_json(
        {"window_start": window[0], "window_end": window[1], "group": {"cell": cell}}
    )
    extra_measure = encode(_parsed(wider), schema_id(wider), row)
    own_id = encode(_parsed(wider), schema_id(schema), row)
    wide_key = publish.canonical_json(
        {
            "window_start": window[0],
            "window_end": window[1],
            "group": {"cell": cell, "vehicle_type": "scooter"},
        }
    )
    _, plain = genuine_group(contract, window, cell)
    return [(key, extra_measure), (key, own_id), (wide_key, plain)]


def _parsed(schema: dict[str, Any]) -> dict[str, Any]:
    return Schemas().register(schema, "forged").parsed


def codes(findings: Iterable[dict[str, Any]], severity: str = "violation") -> Counter[str]:
    """How many findings of each code have this severity."""
    return Counter(f["code"] for f in findings if f["severity"] == severity)
