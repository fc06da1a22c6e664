"""What a release looks like on ``public.<c>.<v>``: Avro schemas, keys, values and headers.

A window's release becomes one record per published group and one suppression-report record,
all on the view's single-partition, compacted public topic:

* key: canonical JSON ``{"window_start", "window_end", "group"}`` (or ``"report": true``), so
  a re-emitted window overwrites identical bytes and compaction keeps one copy;
* value: Avro in the Confluent wire format (``broker.kafka.serde``), with a schema generated
  from the
  view (``release_schema``) or the report schema (``report_schema``); both ids are derived from
  the schema itself, registered under ``public.<c>.<v>-value``;
* headers: contract id, version, policy hash, pseudonym key ids, window bounds.

The report publishes counts of groups only: event totals would let anyone subtract the noise
of a noisy view (a window with one published group would reveal its exact count). A noised view
leaves ``groups_suppressed`` out too (null): an exact count of the groups that had events is
not differentially private (one subject alone in a group changes it by one).
``groups_secondary`` says how many of the suppressed groups had k subjects or more and were
withheld so that linked views cannot be differenced (secondary suppression; 0 for a view linked
to none, null for a noised view); a field added with a default, so readers of the earlier
schema still decode every report.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from broker.kafka.serde import RegisteredSchema, Schemas, decode, encode
from contracts.model import (
    Contract,
    CountMeasure,
    DistinctMeasure,
    DistinctSubjectsMeasure,
    QuantilesMeasure,
    SumMeasure,
    View,
)
from contracts.policy_hash import short_policy_hash
from policies.base import Release

Headers = list[tuple[str, bytes]]

H_CONTRACT = "respublica.contract"
H_CONTRACT_VERSION = "respublica.contract_version"
H_POLICY_HASH = "respublica.policy_hash"
H_KEY_IDS = "respublica.key_ids"
H_WINDOW_START = "respublica.window_start"
H_WINDOW_END = "respublica.window_end"

_INTEGER_MEASURES = (CountMeasure, DistinctSubjectsMeasure, DistinctMeasure)
_NULLABLE_DOUBLE = ["null", "double"]


@dataclass(frozen=True)
class OutRecord:
    """One record to produce: topic, key, value (None is a tombstone) and headers.

    Every topic the worker writes (public, partials, state) has one partition
    (``broker.kafka.topics``): naming it spares the producer a pure-Python murmur2 of every key.
    """

    topic: str
    key: bytes
    value: bytes | None
    headers: Headers
    partition: int = 0


def public_subject(contract: Contract, view: View | str) -> str:
    """The Schema Registry subject of a view's values: ``public.<c>.<v>-value``."""
    return f"{contract.topic_public(view)}-value"


def _namespace(contract: Contract) -> str:
    # Avro names allow [A-Za-z0-9_] only; contract ids use hyphens.
    return "respublica.public." + contract.id.replace("-", "_")


def _measure_type(measure: Any) -> Any:
    if isinstance(measure, _INTEGER_MEASURES):
        return "long"
    if isinstance(measure, QuantilesMeasure):
        return ["null", {"type": "array", "items": "double"}]
    if isinstance(measure, SumMeasure):
        return "double"
    return _NULLABLE_DOUBLE  # mean: null when no event carried the field


def release_schema(contract: Contract, view: View) -> dict[str, Any]:
    """The Avro schema of one published group of ``view`` (a flat record)."""
    fields: list[dict[str, Any]] = [
        {"name": "window_start", "type": "long", "doc": "window start, ms since epoch UTC"},
        {"name": "window_end", "type": "long", "doc": "window end (exclusive), ms"},
    ]
    fields += [{"name": d.name, "type": ["null", "string"]} for d in view.group_by]
    fields += [{"name": m.name, "type": _measure_type(m)} for m in view.measures]
    return {
        "type": "record",
        "name": f"{view.name}_release",
        "namespace": _namespace(contract),
        "doc": f"view {view.name} of contract {contract.id}",
        "fields": fields,
    }


def report_schema(contract: Contract, view: View) -> dict[str, Any]:
    """The Avro schema of a window's suppression report (MDS-style, group counts only; a noised
    view's ``groups_suppressed`` is always null)."""
    suppressed: Any = ["null", "long"] if view.noise is not None else "long"
    return {
        "type": "record",
        "name": f"{view.name}_report",
        "namespace": _namespace(contract),
        "fields": [
            {"name": "window_start", "type": "long"},
            {"name": "window_end", "type": "long"},
            {"name": "k", "type": "long"},
            {"name": "groups_published", "type": "long"},
            {"name": "groups_suppressed", "type": suppressed},
            {"name": "withheld_reason", "type": ["null", "string"], "default": None},
            {"name": "epsilon", "type": "double"},
            {"name": "groups_secondary", "type": ["null", "long"], "default": None},
        ],
    }


def public_schemas(contracts: Iterable[Contract]) -> Schemas:
    """Every public schema of the contracts, by id (for subscribers, exports and tests)."""
    schemas = Schemas()
    for contract in contracts:
        for view in contract.views:
            subject = public_subject(contract, view)
            schemas.register(release_schema(contract, view), subject)
            schemas.register(report_schema(contract, view), subject)
    return schemas


def canonical_json(value: Any) -> bytes:
    """Deterministic JSON bytes (sorted keys, no spaces): equal inputs give equal keys."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), default=str).encode()


def _text(value: Any) -> str | None:
    return None if value is None else str(value)


class ReleaseEncoder:
    """Turns the ``Release`` objects of one view into public records."""

    def __init__(self, contract: Contract, view: View) -> None:
        self.topic = contract.topic_public(view)
        schemas = Schemas()
        subject = public_subject(contract, view)
        self.group_schema: RegisteredSchema = schemas.register(
            release_schema(contract, view), subject
        )
        self.report_schema: RegisteredSchema = schemas.register(
            report_schema(contract, view), subject
        )
        self._dimensions = tuple(d.name for d in view.group_by)
        self._noised = view.noise is not None
        self._base_headers: Headers = [
            (H_CONTRACT, contract.id.encode()),
            (H_CONTRACT_VERSION, str(contract.version).encode()),
            (H_POLICY_HASH, short_policy_hash(contract).encode()),
        ]

    def records(self, release: Release) -> list[OutRecord]:
        """Groups first (canonical order), then the window's report."""
        data = release.to_dict()
        bounds = {"window_start": data["window_start"], "window_end": data["window_end"]}
        headers = [
            *self._base_headers,
            (H_KEY_IDS, ",".join(data["key_ids"]).encode()),
            (H_WINDOW_START, str(data["window_start"]).encode()),
            (H_WINDOW_END, str(data["window_end"]).encode()),
        ]
        out = [self._group(bounds, g, headers) for g in data["groups"]]
        report = {
            **bounds,
            **{
                k: data["report"][k]
                for k in (
                    "k",
                    "groups_published",
                    "groups_suppressed",
                    "withheld_reason",
                    "groups_secondary",
                )
            },
            "epsilon": float(data["epsilon"]),
        }
        if self._noised:
            report["groups_suppressed"] = report["groups_secondary"] = None
        value = encode(self.report_schema.parsed, self.report_schema.schema_id, report)
        out.append(
            OutRecord(self.topic, canonical_json({**bounds, "report": True}), value, list(headers))
        )
        return out

    def _group(
        self, bounds: Mapping[str, int], group: Mapping[str, Any], headers: Headers
    ) -> OutRecord:
        dims = {name: _text(group["group"].get(name)) for name in self._dimensions}
        row = {**bounds, **dims, **group["measures"]}
        value = encode(self.group_schema.parsed, self.group_schema.schema_id, row)
        key = canonical_json({**bounds, "group": group["group"]})
        return OutRecord(self.topic, key, value, list(headers))


def decode_public(
    key: bytes, value: bytes, schemas: Schemas
) -> tuple[dict[str, Any], dict[str, Any]]:
    """``(key, row)`` of a public record: the JSON key and the Avro-decoded value."""
    return json.loads(key), decode(value, schemas)[1]
