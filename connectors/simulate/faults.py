"""Turn good simulated records into bad payloads, each with the rejection it must get.

``FaultInjector.make(kind, record)`` builds one bad payload from a valid record of a contract
stream and says which ``Reason`` and field path the validator must answer; ``mix`` weaves a
chosen share of them into a stream of good payloads. JSON kinds produce one NDJSON line (what
the HTTP gateway and ``ingest.`` topics take); Avro kinds produce a Confluent-framed value
for ``StreamValidator.validate_avro`` (an ingest topic declared as Avro).

Whole-request faults (unknown contract or stream, a contract not in force, a body too large
for the gateway) are not per-record: tests build them around the gateway directly.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import timedelta
from enum import StrEnum
from typing import Any, NamedTuple

from broker.kafka.reasons import Reason
from broker.kafka.serde import Schemas, encode
from connectors.simulate.base import seeded_random
from connectors.validate import DEFAULT_MAX_BYTES
from contracts.model import Contract, Stream

DAY_MS = 86_400_000
LONDON = (51.5072, -0.1276)  # a valid place outside every example territory


class FaultKind(StrEnum):
    """A kind of bad record. ``AVRO_*`` kinds are Avro wire faults; the rest are JSON."""

    MISSING_FIELD = "missing_field"
    WRONG_TYPE = "wrong_type"
    NULL_VALUE = "null_value"
    UNKNOWN_FIELD = "unknown_field"
    NUMBER_OUT_OF_RANGE = "number_out_of_range"
    COORDINATE_OUT_OF_RANGE = "coordinate_out_of_range"
    OUTSIDE_TERRITORY = "outside_territory"
    FUTURE_TIMESTAMP = "future_timestamp"
    TOO_LATE = "too_late"
    DUPLICATE_EVENT_ID = "duplicate_event_id"
    MALFORMED_JSON = "malformed_json"
    NOT_AN_OBJECT = "not_an_object"
    OVERSIZE = "oversize"
    INVALID_UTF8 = "invalid_utf8"
    LONE_SURROGATE = "lone_surrogate"
    AVRO_TRUNCATED = "avro_truncated"
    AVRO_TRAILING_BYTES = "avro_trailing_bytes"
    AVRO_BAD_MAGIC = "avro_bad_magic"
    AVRO_UNKNOWN_SCHEMA = "avro_unknown_schema"
    AVRO_INVALID_UTF8 = "avro_invalid_utf8"


JSON_KINDS = tuple(k for k in FaultKind if not k.name.startswith("AVRO_"))
# Semantic faults survive Avro encoding: they are valid records with wrong times or places.
_SEMANTIC = (
    FaultKind.COORDINATE_OUT_OF_RANGE,
    FaultKind.OUTSIDE_TERRITORY,
    FaultKind.FUTURE_TIMESTAMP,
    FaultKind.TOO_LATE,
    FaultKind.DUPLICATE_EVENT_ID,
)
AVRO_KINDS = tuple(k for k in FaultKind if k.name.startswith("AVRO_")) + _SEMANTIC


@dataclass(frozen=True)
class Fault:
    """A bad payload and the rejection it must get (reason and field path, no value)."""

    kind: FaultKind
    payload: bytes
    reason: Reason
    field: str


class Item(NamedTuple):
    """One payload of a mixed stream: a good record (``fault`` None) or a fault."""

    payload: bytes
    record: dict[str, Any] | None
    fault: Fault | None


def to_json_line(record: dict[str, Any]) -> bytes:
    """A record as one compact JSON line (no newline), UTF-8."""
    return json.dumps(record, separators=(",", ":"), ensure_ascii=False).encode()


class FaultInjector:
    """Builds bad payloads for one contract stream from its valid records."""

    def __init__(
        self,
        contract: Contract,
        stream: str,
        *,
        seed: int = 0,
        max_bytes: int = DEFAULT_MAX_BYTES,
        schemas: Schemas | None = None,
    ) -> None:
        self.contract = contract
        self.stream: Stream = contract.stream(stream)
        self.max_bytes = max_bytes
        self.schemas = schemas if schemas is not None else Schemas.from_contracts([contract])
        self._schema = self.schemas.for_stream(contract, self.stream)
        self._rng = seeded_random(seed)
        self._turn = 0
        fields = self.stream.fields
        roles = {self.stream.event_time}
        self._required = [n for n, f in fields.items() if not f.nullable]
        self._numbers = [n for n, f in fields.items() if f.is_numeric and n not in roles]
        self._integers = [n for n, f in fields.items() if f.is_integer and n not in roles]
        self._strings = [n for n, f in fields.items() if f.types == {"string"}]
        self._lateness_ms = int(self.stream.allowed_lateness / timedelta(milliseconds=1))

    def make(self, kind: FaultKind, record: dict[str, Any]) -> Fault:
        """A fault of ``kind`` derived from the valid ``record`` (which is not modified).

        For ``DUPLICATE_EVENT_ID`` the payload repeats the record: it is a fault only when the
        record itself was sent before.
        """
        if kind in AVRO_KINDS and kind not in _SEMANTIC:
            return self._avro_wire(kind, record)
        return _BUILDERS[kind](self, dict(record))

    def make_avro(self, kind: FaultKind, record: dict[str, Any]) -> Fault:
        """Like ``make``, but semantic faults are Avro-encoded too (for Avro ingest topics)."""
        fault = self.make(kind, record)
        if kind not in _SEMANTIC:
            return fault
        mutated = json.loads(fault.payload)
        return Fault(
            kind,
            encode(self._schema.parsed, self._schema.schema_id, mutated),
            fault.reason,
            fault.field,
        )

    def encode_avro(self, record: dict[str, Any]) -> bytes:
        """A good record as a Confluent-framed Avro value of this stream."""
        return encode(self._schema.parsed, self._schema.schema_id, record)

    def mix(
        self,
        records: Iterable[dict[str, Any]],
        *,
        share: float,
        kinds: Sequence[FaultKind] | None = None,
        avro: bool = False,
    ) -> Iterator[Item]:
        """Good records, each followed by a fault with a probability giving ``share`` overall.

        Kinds (default: every JSON kind, or every Avro kind with ``avro``) are drawn in turn,
        round robin, so every kind appears in a long enough stream.
        """
        if not 0.0 <= share < 1.0:
            msg = "the bad share must be in [0, 1)"
            raise ValueError(msg)
        kinds = kinds or (AVRO_KINDS if avro else JSON_KINDS)
        odds = share / (1.0 - share)
        for record in records:
            good = self.encode_avro(record) if avro else to_json_line(record)
            yield Item(good, record, None)
            if self._rng.random() < odds:
                kind = kinds[self._turn % len(kinds)]
                self._turn += 1  # kept across calls: mixing record by record still rotates
                fault = self.make_avro(kind, record) if avro else self.make(kind, record)
                yield Item(fault.payload, None, fault)

    # JSON builders: each returns the mutated record as a JSON line.

    def _missing(self, record: dict[str, Any]) -> Fault:
        name = self._rng.choice(self._required)
        del record[name]
        return self._json(FaultKind.MISSING_FIELD, record, Reason.MISSING_FIELD, name)

    def _wrong_type(self, record: dict[str, Any]) -> Fault:
        name = self._rng.choice(self._numbers + self._strings)
        record[name] = 12345 if name in self._strings else "not-a-number"
        return self._json(FaultKind.WRONG_TYPE, record, Reason.WRONG_TYPE, name)

    def _null(self, record: dict[str, Any]) -> Fault:
        name = self._rng.choice(self._required)
        record[name] = None
        return self._json(FaultKind.NULL_VALUE, record, Reason.WRONG_TYPE, name)

    def _unknown(self, record: dict[str, Any]) -> Fault:
        record["colour"] = "red"
        return self._json(FaultKind.UNKNOWN_FIELD, record, Reason.UNKNOWN_FIELD, "colour")

    def _number_range(self, record: dict[str, Any]) -> Fault:
        name = self._rng.choice(self._integers)
        record[name] = 2**70  # fits neither Avro int nor long
        return self._json(FaultKind.NUMBER_OUT_OF_RANGE, record, Reason.OUT_OF_RANGE, name)

    def _coordinate_range(self, record: dict[str, Any]) -> Fault:
        lat, _ = self._location()
        record[lat] = 91.5
        return self._json(FaultKind.COORDINATE_OUT_OF_RANGE, record, Reason.OUT_OF_RANGE, lat)

    def _outside(self, record: dict[str, Any]) -> Fault:
        lat, lon = self._location()
        record[lat], record[lon] = LONDON
        return self._json(
            FaultKind.OUTSIDE_TERRITORY, record, Reason.OUTSIDE_TERRITORY, f"{lat},{lon}"
        )

    def _future(self, record: dict[str, Any]) -> Fault:
        name = self.stream.event_time
        # Beyond any clock that follows the data: the clock trails records by < the lateness.
        record[name] += self._lateness_ms + DAY_MS
        return self._json(FaultKind.FUTURE_TIMESTAMP, record, Reason.EVENT_IN_FUTURE, name)

    def _too_late(self, record: dict[str, Any]) -> Fault:
        name = self.stream.event_time
        record[name] -= self._lateness_ms + DAY_MS
        return self._json(FaultKind.TOO_LATE, record, Reason.TOO_LATE, name)

    def _duplicate(self, record: dict[str, Any]) -> Fault:
        name = self.stream.event_id or ""
        return self._json(FaultKind.DUPLICATE_EVENT_ID, record, Reason.DUPLICATE_EVENT, name)

    def _malformed(self, record: dict[str, Any]) -> Fault:
        text = to_json_line(record).decode()
        payload = text[: len(text) // 2].encode()
        return Fault(FaultKind.MALFORMED_JSON, payload, Reason.MALFORMED_JSON, "")

    def _not_object(self, record: dict[str, Any]) -> Fault:
        payload = b"[" + to_json_line(record) + b"]"
        return Fault(FaultKind.NOT_AN_OBJECT, payload, Reason.NOT_AN_OBJECT, "")

    def _oversize(self, record: dict[str, Any]) -> Fault:
        record["padding"] = "x" * (self.max_bytes + 1)
        return self._json(FaultKind.OVERSIZE, record, Reason.PAYLOAD_TOO_LARGE, "")

    def _invalid_utf8(self, record: dict[str, Any]) -> Fault:
        name = self._rng.choice(self._strings)
        record[name] = "\x01\x01\x01"
        payload = to_json_line(record).replace(b"\\u0001\\u0001\\u0001", b"\xff\xfe\xfd")
        return Fault(FaultKind.INVALID_UTF8, payload, Reason.INVALID_UTF8, "")

    def _lone_surrogate(self, record: dict[str, Any]) -> Fault:
        name = self._rng.choice(self._strings)
        record[name] = "\x01"
        payload = to_json_line(record).replace(b"\\u0001", b"\\ud800")
        return Fault(FaultKind.LONE_SURROGATE, payload, Reason.INVALID_UTF8, name)

    def _json(self, kind: FaultKind, record: dict[str, Any], reason: Reason, field: str) -> Fault:
        return Fault(kind, to_json_line(record), reason, field)

    def _location(self) -> tuple[str, str]:
        location = self.stream.location
        if location is None:
            msg = "this stream has no location fields"
            raise ValueError(msg)
        return location.lat, location.lon

    def _avro_wire(self, kind: FaultKind, record: dict[str, Any]) -> Fault:
        good = self.encode_avro(record)
        if kind is FaultKind.AVRO_TRUNCATED:
            return self._truncated(record)
        if kind is FaultKind.AVRO_TRAILING_BYTES:
            return Fault(kind, good + b"\x02\x04", Reason.AVRO_TRAILING_BYTES, "")
        if kind is FaultKind.AVRO_BAD_MAGIC:
            return Fault(kind, b"\x01" + good[1:], Reason.AVRO_BAD_MAGIC, "")
        if kind is FaultKind.AVRO_UNKNOWN_SCHEMA:
            unknown = next(i for i in range(1, 2**31) if i not in self.schemas)
            return Fault(
                kind,
                b"\x00" + unknown.to_bytes(4, "big") + good[5:],
                Reason.AVRO_UNKNOWN_SCHEMA,
                "",
            )
        return self._avro_utf8(record)

    def _avro_utf8(self, record: dict[str, Any]) -> Fault:
        name = self._strings[0]
        record[name] = "\x01" * 6
        payload = self.encode_avro(record).replace(b"\x01" * 6, b"\xff\xfe" * 3)
        return Fault(FaultKind.AVRO_INVALID_UTF8, payload, Reason.INVALID_UTF8, name)

    def _truncated(self, record: dict[str, Any]) -> Fault:
        """Cut inside the first string field's bytes, where every decoder hits end of input.

        (A cut inside a varint is reported by fastavro as a bad value, not as truncation.)
        """
        name = self._strings[0]
        prefix: dict[str, Any] = {}
        for field in self.stream.fields:
            prefix[field] = record[field]
            if field == name:
                break
        end = len(_encode_prefix(self, prefix))
        cut = end - max(1, len(record[name].encode()) // 2)
        return Fault(
            FaultKind.AVRO_TRUNCATED, self.encode_avro(record)[:cut], Reason.AVRO_TRUNCATED, name
        )


def _encode_prefix(injector: FaultInjector, partial: dict[str, Any]) -> bytes:
    """Bytes of the first fields of a record, encoded with a schema of just those fields."""
    schema = injector.stream.raw_schema
    fields = [f for f in schema["fields"] if f["name"] in partial]
    prefix_schema = {"type": "record", "name": "Prefix", "fields": fields}
    return encode(Schemas().register(prefix_schema, "prefix").parsed, 0, partial)


_BUILDERS = {
    FaultKind.MISSING_FIELD: FaultInjector._missing,
    FaultKind.WRONG_TYPE: FaultInjector._wrong_type,
    FaultKind.NULL_VALUE: FaultInjector._null,
    FaultKind.UNKNOWN_FIELD: FaultInjector._unknown,
    FaultKind.NUMBER_OUT_OF_RANGE: FaultInjector._number_range,
    FaultKind.COORDINATE_OUT_OF_RANGE: FaultInjector._coordinate_range,
    FaultKind.OUTSIDE_TERRITORY: FaultInjector._outside,
    FaultKind.FUTURE_TIMESTAMP: FaultInjector._future,
    FaultKind.TOO_LATE: FaultInjector._too_late,
    FaultKind.DUPLICATE_EVENT_ID: FaultInjector._duplicate,
    FaultKind.MALFORMED_JSON: FaultInjector._malformed,
    FaultKind.NOT_AN_OBJECT: FaultInjector._not_object,
    FaultKind.OVERSIZE: FaultInjector._oversize,
    FaultKind.INVALID_UTF8: FaultInjector._invalid_utf8,
    FaultKind.LONE_SURROGATE: FaultInjector._lone_surrogate,
}
