"""The closed set of reasons an event can be rejected for, and the stage that found it.

Every rejection anywhere in respublica (HTTP gateway, Kafka ingest validator, pull connectors)
is one ``Reason`` plus a field path, never free text: the reason travels in DLQ headers, HTTP
responses and metric labels, so it must never carry a data value. ``docs/reasons.md`` explains
each code to platform operators (what it means, how to fix it).
"""

from __future__ import annotations

from enum import StrEnum


class Stage(StrEnum):
    """Where in the validation path a rejection was decided."""

    DECODE = "decode"  # bytes -> JSON object / Avro record
    SCHEMA = "schema"  # the object against the stream's Avro schema
    SEMANTIC = "semantic"  # time, place, validity period, identifiers, duplicates
    ROUTE = "route"  # which contract and stream the payload is for
    INTERNAL = "internal"  # a bug of ours, never the provider's fault


class Reason(StrEnum):
    """Why an event was rejected. The value is the stable code written to DLQ headers."""

    PAYLOAD_TOO_LARGE = "PAYLOAD_TOO_LARGE"
    MALFORMED_JSON = "MALFORMED_JSON"
    NOT_AN_OBJECT = "NOT_AN_OBJECT"
    INVALID_UTF8 = "INVALID_UTF8"
    AVRO_BAD_MAGIC = "AVRO_BAD_MAGIC"
    AVRO_UNKNOWN_SCHEMA = "AVRO_UNKNOWN_SCHEMA"
    AVRO_TRUNCATED = "AVRO_TRUNCATED"
    AVRO_TRAILING_BYTES = "AVRO_TRAILING_BYTES"
    AVRO_INVALID = "AVRO_INVALID"
    SCHEMA_MISMATCH = "SCHEMA_MISMATCH"
    MISSING_FIELD = "MISSING_FIELD"
    WRONG_TYPE = "WRONG_TYPE"
    UNKNOWN_FIELD = "UNKNOWN_FIELD"
    OUT_OF_RANGE = "OUT_OF_RANGE"
    OUTSIDE_TERRITORY = "OUTSIDE_TERRITORY"
    EVENT_IN_FUTURE = "EVENT_IN_FUTURE"
    TOO_LATE = "TOO_LATE"
    CONTRACT_INACTIVE = "CONTRACT_INACTIVE"
    DUPLICATE_EVENT = "DUPLICATE_EVENT"
    INVALID_IDENTIFIER = "INVALID_IDENTIFIER"
    UNKNOWN_CONTRACT = "UNKNOWN_CONTRACT"
    UNKNOWN_STREAM = "UNKNOWN_STREAM"
    INTERNAL = "INTERNAL"

    @property
    def stage(self) -> Stage:
        """The stage that usually finds this reason (a rejection may still name another)."""
        return _DEFAULT_STAGE[self]


_DEFAULT_STAGE: dict[Reason, Stage] = {
    Reason.PAYLOAD_TOO_LARGE: Stage.DECODE,
    Reason.MALFORMED_JSON: Stage.DECODE,
    Reason.NOT_AN_OBJECT: Stage.DECODE,
    Reason.INVALID_UTF8: Stage.DECODE,
    Reason.AVRO_BAD_MAGIC: Stage.DECODE,
    Reason.AVRO_UNKNOWN_SCHEMA: Stage.DECODE,
    Reason.AVRO_TRUNCATED: Stage.DECODE,
    Reason.AVRO_TRAILING_BYTES: Stage.DECODE,
    Reason.AVRO_INVALID: Stage.DECODE,
    Reason.SCHEMA_MISMATCH: Stage.SCHEMA,
    Reason.MISSING_FIELD: Stage.SCHEMA,
    Reason.WRONG_TYPE: Stage.SCHEMA,
    Reason.UNKNOWN_FIELD: Stage.SCHEMA,
    Reason.OUT_OF_RANGE: Stage.SCHEMA,
    Reason.OUTSIDE_TERRITORY: Stage.SEMANTIC,
    Reason.EVENT_IN_FUTURE: Stage.SEMANTIC,
    Reason.TOO_LATE: Stage.SEMANTIC,
    Reason.CONTRACT_INACTIVE: Stage.SEMANTIC,
    Reason.DUPLICATE_EVENT: Stage.SEMANTIC,
    Reason.INVALID_IDENTIFIER: Stage.SEMANTIC,
    Reason.UNKNOWN_CONTRACT: Stage.ROUTE,
    Reason.UNKNOWN_STREAM: Stage.ROUTE,
    Reason.INTERNAL: Stage.INTERNAL,
}
