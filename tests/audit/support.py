"""Helpers of the audit tests: rejected records through the validator, forged public records."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable, Iterator
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


# Fields of the confidential report that count events of a view or a window (or cover them):
# none may appear in the public report, at any depth (``windows.open`` counts windows).
CONFIDENTIAL_KEYS = frozenset(
    {
        "raw_events",
        "events_in",
        "published",
        "suppressed",
        "events_published",
        "events_suppressed",
        "groups_suppressed",
        "late",
        "filtered",
        "outside",
        "duplicate",
        "open",
        "folded",
        "worker_checkpoint_counts",
    }
)


def keys_in(data: Any, path: tuple[str, ...] = ()) -> Iterator[tuple[tuple[str, ...], str]]:
    """Every (path, key) of a JSON document; ``open`` under ``windows`` is a window count."""
    if isinstance(data, dict):
        for key, value in data.items():
            if not (key == "open" and path[-1:] == ("windows",)):
                yield path, key
            yield from keys_in(value, (*path, key))
    elif isinstance(data, list):
        for item in data:
            yield from keys_in(item, path)


def sample_report(findings: list[dict[str, Any]]) -> dict[str, Any]:
    """A confidential report as ``broker.audit.run`` builds it, with numbers easy to spot."""
    return {
        "format": "respublica-audit/1",
        "ok": not any(f["severity"] == "violation" for f in findings),
        "contract": {
            "id": "c-1",
            "version": 1,
            "title": "T",
            "provider": "p",
            "beneficiary": "b",
            "policy_hash": "h" * 64,
            "policy_hash_short": "h" * 16,
        },
        "period": {
            "since_ms": None,
            "until_ms": None,
            "since": None,
            "until": None,
            "raw_events_by": "event time",
            "rejected_by": "rejection time",
            "windows_by": "window start",
        },
        "summary": {
            "violations": sum(f["severity"] == "violation" for f in findings),
            "warnings": sum(f["severity"] == "warning" for f in findings),
        },
        "findings": findings,
        "reconciliation": {
            "streams": [
                {
                    "stream": "vehicle_events",
                    "raw_events": 25000,
                    "rejected": 40,
                    "events_in": 25040,
                    "rejected_by_reason": {"MALFORMED_JSON": 40},
                    "undecodable": 0,
                    "control_records": 1,
                    "raw_topic_trimmed": False,
                }
            ],
            "views": [
                {
                    "view": "availability",
                    "stream": "vehicle_events",
                    "events_in": 25000,
                    "published": 947,
                    "suppressed": 7227,
                    "open": 0,
                    "late": 0,
                    "filtered": 16826,
                    "outside": 0,
                    "duplicate": 0,
                    "gap": 3,
                    "gap_detail": {
                        "unaccounted": 0,
                        "undecodable": 0,
                        "worker_accounting": 3,
                        "worker_checkpoints": 0,
                    },
                    "windows": {
                        "released": 96,
                        "withheld": 0,
                        "open": 1,
                        "with_accounting": 96,
                        "not_verifiable": 0,
                    },
                    "worker_checkpoint_counts": {
                        "folded": 8174,
                        "late": 0,
                        "filtered": 16826,
                        "outside": 0,
                        "duplicate": 0,
                    },
                    "checkpoints_compared": True,
                }
            ],
        },
        "terms": {
            "views": [],
            "topics": [],
            "keys": {
                "topic": "k",
                "rotation": "1 day",
                "key_retention": "7 days",
                "epochs_stored": [],
                "epochs_destroyed": [],
                "destruction_floor": None,
                "noise_key": False,
            },
            "acls": {"enforced": False, "grants": []},
            "versions": {"public": [], "raw": [{"contract_version": "1", "records": 25000}]},
        },
        "canary": {
            "identifiers": 1500,
            "identifiers_too_short": 0,
            "min_length": 6,
            "scanned": {"public_records": 1043, "dlq_records": 40},
            "hits": 1,
            "listed": [
                {
                    "where": "public.c-1.availability/0@3 header x",
                    "identifier": "sha256:3f2a9c0d1e2b",
                }
            ],
        },
        "linked": {"sets": []},
        "read": {
            "public.c-1.availability": {"0": [0, 1043]},
            "raw.c-1.vehicle_events": {"0": [0, 12511], "1": [0, 12490]},
            "dlq.c-1.vehicle_events": {"0": [0, 40]},
        },
    }
