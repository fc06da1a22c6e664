"""The one validation path every entry point uses: bytes in, ``Accepted`` or ``Rejected`` out.

``StreamValidator`` checks a payload for one contract stream, in this order:

1. size cap, before any decoding (PAYLOAD_TOO_LARGE), and again on the Avro value of a record
   given already parsed (pull connectors, the gateway), before any semantic check;
2. decode: strict UTF-8 JSON object, or Confluent-framed Avro (magic, schema id, complete body);
3. schema: every field present or defaulted, of the right type and range, no unknown field
   (JSON); the stream's own schema id (Avro);
4. semantics: event time not beyond ``now + future_skew`` nor before ``now - allowed_lateness``,
   coordinates in range and inside the territory, contract valid at the event time, subject
   and event id usable as identifiers (``policies.pseudonymise.identifier_problem``), event id
   not already seen in its canonical form (``connectors.dedup``);
5. encode for ``raw.<c>.<s>``: Confluent Avro value (the record as sent), the canonical subject
   (``canonical_id``) as key, so every spelling of one subject lands on one raw partition;
   provenance headers.

"now" is always passed in (``now_ms``), so replays and simulations decide their own clock.
``Router`` picks the validator of a (contract, stream) pair; ``dlq_record`` turns a rejection
into a dead-letter record. No data value ever reaches a ``Rejected``, a header or a log line.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Callable, Iterable, Mapping
from datetime import timedelta
from typing import Any, NoReturn

from broker.kafka.reasons import Reason, Stage
from broker.kafka.serde import (
    RegisteredSchema,
    Schemas,
    SerializationError,
    body_writer,
    decode_body,
    read_header,
)
from connectors.base import Accepted, Headers, Outcome, Rejected
from connectors.conform import FieldProblem, record_conformer
from connectors.dedup import DuplicateFilter
from connectors.territory import TerritoryTest
from contracts.model import Contract
from policies.pseudonymise import canonical_id, identifier_problem

DEFAULT_MAX_BYTES = 64 * 1024
DEFAULT_FUTURE_SKEW = timedelta(minutes=5)
H_CONTRACT = "respublica.contract"
H_CONTRACT_VERSION = "respublica.contract_version"
H_STREAM = "respublica.stream"
H_CONNECTOR = "respublica.connector"
H_RECEIVED_AT = "respublica.received_at"
H_REASON = "respublica.reason"
H_FIELD = "respublica.field"
H_STAGE = "respublica.stage"
H_SOURCE = "respublica.source"
H_REJECTED_AT = "respublica.rejected_at"
H_ORIGINAL_BYTES = "respublica.original_bytes"
H_ORIGINAL_SHA256 = "respublica.original_sha256"
DLQ_MAX_VALUE_BYTES = 64 * 1024
"""A dead-letter record keeps at most this prefix of the payload: the DLQ write must never
fail (Kafka refuses records over its size limit), so one oversized record cannot fail a batch
and stop the shared validator. The original size and SHA-256 travel as headers."""
AVRO_MAGIC = 0
# A time off by a factor of 1000 in ms but within this of now in another unit was sent in
# that unit: the rejection says so instead of "too late" alone.
UNIT_HINT_WINDOW_MS = 400 * 86_400_000
_UNITS = ((1000, "seconds"), (1 / 1000, "microseconds"), (1 / 1_000_000, "nanoseconds"))
H_DETAIL = "respublica.detail"

_log = logging.getLogger(__name__)
_INTERNAL = Rejected(Reason.INTERNAL, "", Stage.INTERNAL)


def _reject_constant(name: str) -> NoReturn:
    msg = "NaN and Infinity are not JSON"
    raise ValueError(msg)


# One decoder for the process: json.loads(**kwargs) would build a new one per call.
_JSON = json.JSONDecoder(parse_constant=_reject_constant)
_SCAN: Callable[[str, int], tuple[Any, int]] = _JSON.scan_once  # type: ignore[attr-defined]
_JSON_SPACE = " \t\n\r"  # the whitespace JSON allows around a value


def _ms(delta: timedelta) -> int:
    return int(delta.total_seconds() * 1000)


class StreamValidator:
    """Validates payloads for one stream of one contract. Not thread-safe (the dedup set)."""

    def __init__(
        self,
        contract: Contract,
        stream_name: str,
        *,
        schemas: Schemas,
        max_bytes: int = DEFAULT_MAX_BYTES,
        future_skew: timedelta = DEFAULT_FUTURE_SKEW,
        dedup: DuplicateFilter | None = None,
    ) -> None:
        stream = contract.stream(stream_name)
        self.contract = contract
        self.stream = stream
        self.schema: RegisteredSchema = schemas.for_stream(contract, stream)
        self.max_bytes = max_bytes
        self.dedup = dedup if dedup is not None else DuplicateFilter(stream.allowed_lateness)
        self._schemas = schemas
        self._conform = record_conformer(self.schema.parsed)
        # Header and body in one call: compiled for flat schemas (broker.kafka.avro_fast).
        self._write = body_writer(self.schema.parsed, prefix=self.schema.header)
        self._skew_ms = _ms(future_skew)
        self._lateness_ms = _ms(stream.allowed_lateness)
        self._valid_from_ms = int(contract.validity.start.timestamp() * 1000)
        self._valid_until_ms = int(contract.validity.end.timestamp() * 1000)
        self._territory = TerritoryTest(contract.territory)
        self._location = (stream.location.lat, stream.location.lon) if stream.location else None
        self._static_headers: Headers = [
            (H_CONTRACT, contract.id.encode()),
            (H_CONTRACT_VERSION, str(contract.version).encode()),
            (H_STREAM, stream.name.encode()),
        ]
        self._headers: dict[tuple[str, int], Headers] = {}

    @property
    def raw_topic(self) -> str:
        """``raw.<c>.<s>``, where accepted records go."""
        return self.contract.topic_raw(self.stream)

    @property
    def dlq_topic(self) -> str:
        """``dlq.<c>.<s>``, where rejected payloads go."""
        return self.contract.topic_dlq(self.stream)

    def validate(self, payload: bytes, *, now_ms: int, connector: str, source: str) -> Outcome:
        """Raw bytes of unknown format: Confluent Avro if binary-framed, JSON otherwise.

        ``0x00`` first is Avro. Another control byte can never start JSON text, so it is read
        as a framed value with a wrong magic byte (AVRO_BAD_MAGIC), the clearer diagnosis.
        """
        first = payload[:1]
        if first == b"\x00" or (first and first < b"\x20" and first not in b"\t\n\r"):
            return self.validate_avro(payload, now_ms=now_ms, connector=connector, source=source)
        return self.validate_json(payload, now_ms=now_ms, connector=connector, source=source)

    def validate_json(
        self, payload: bytes | Mapping[str, Any], *, now_ms: int, connector: str, source: str
    ) -> Outcome:
        """A JSON object as bytes, or already parsed (the gateway parses request bodies).

        The size cap applies to the bytes before decoding and, in every case, to the Avro value
        the record becomes: a pull connector's parsed item has no byte size, and one huge field
        must end in the DLQ, not in a record Kafka refuses (which would stall the connector).
        ``source`` names where the payload came from (kept for symmetry with ``dlq_record``;
        rejections do not carry it).
        """
        try:
            return self._json(payload, now_ms, connector)
        except Exception as exc:  # a bug of ours must not stop the stream; log the type only
            _log.error(
                "internal error validating JSON for %s: %s", self.raw_topic, type(exc).__name__
            )
            return _INTERNAL

    def validate_avro(self, payload: bytes, *, now_ms: int, connector: str, source: str) -> Outcome:
        """A Confluent-framed Avro value written with this stream's schema."""
        try:
            return self._avro(payload, now_ms, connector)
        except Exception as exc:  # a bug of ours must not stop the stream; log the type only
            _log.error(
                "internal error validating Avro for %s: %s", self.raw_topic, type(exc).__name__
            )
            return _INTERNAL

    def _json(self, payload: bytes | Mapping[str, Any], now_ms: int, connector: str) -> Outcome:
        if isinstance(payload, bytes | bytearray | memoryview):
            if len(payload) > self.max_bytes:
                return Rejected(Reason.PAYLOAD_TOO_LARGE, "", Stage.DECODE)
            parsed = parse_json(bytes(payload))
            if isinstance(parsed, Rejected):
                return parsed
            payload = parsed
        try:
            record = self._conform(payload)
        except FieldProblem as problem:
            stage = Stage.DECODE if problem.reason is Reason.NOT_AN_OBJECT else Stage.SCHEMA
            return Rejected(problem.reason, problem.path, stage)
        value = self._encode(record)
        if len(value) > self.max_bytes:  # before the duplicate filter remembers its event id
            return Rejected(Reason.PAYLOAD_TOO_LARGE, _largest_field(record), Stage.DECODE)
        rejected = self._semantics(record, now_ms)
        if rejected is not None:
            return rejected
        return self._accept(record, value, now_ms, connector)

    def _avro(self, payload: bytes, now_ms: int, connector: str) -> Outcome:
        if len(payload) > self.max_bytes:
            return Rejected(Reason.PAYLOAD_TOO_LARGE, "", Stage.DECODE)
        data = bytes(payload)
        try:
            sid = read_header(data)
            if sid != self.schema.schema_id:
                reason = (
                    Reason.SCHEMA_MISMATCH if sid in self._schemas else Reason.AVRO_UNKNOWN_SCHEMA
                )
                return Rejected.of(reason)
            record = decode_body(data, self.schema.parsed)
        except SerializationError as exc:
            return Rejected(exc.reason, exc.field_path, Stage.DECODE)
        rejected = self._semantics(record, now_ms)
        if rejected is not None:
            return rejected
        # The body decoded completely with this very schema: pass the bytes on unchanged.
        return self._accept(record, data, now_ms, connector)

    def _semantics(self, record: Mapping[str, Any], now_ms: int) -> Rejected | None:
        stream = self.stream
        event_time = record.get(stream.event_time)
        if type(event_time) is not int:
            return Rejected(Reason.MISSING_FIELD, stream.event_time, Stage.SEMANTIC)
        if event_time > now_ms + self._skew_ms:
            hint = _unit_hint(event_time, now_ms)
            return Rejected(Reason.EVENT_IN_FUTURE, stream.event_time, Stage.SEMANTIC, hint)
        if event_time < now_ms - self._lateness_ms:
            hint = _unit_hint(event_time, now_ms)
            return Rejected(Reason.TOO_LATE, stream.event_time, Stage.SEMANTIC, hint)
        if self._location is not None:
            rejected = self._check_location(record, *self._location)
            if rejected is not None:
                return rejected
        if not self._valid_from_ms <= event_time < self._valid_until_ms:
            return Rejected(Reason.CONTRACT_INACTIVE, stream.event_time, Stage.SEMANTIC)
        subject = record.get(stream.subject)
        if subject is not None and identifier_problem(subject) is not None:
            return Rejected(Reason.INVALID_IDENTIFIER, stream.subject, Stage.SEMANTIC)
        event_id_field = stream.event_id
        if event_id_field is not None:
            event_id = record.get(event_id_field)
            if event_id is not None:
                if identifier_problem(event_id) is not None:
                    return Rejected(Reason.INVALID_IDENTIFIER, event_id_field, Stage.SEMANTIC)
                if self.dedup.seen(canonical_id(event_id), event_time_ms=event_time, now_ms=now_ms):
                    return Rejected(Reason.DUPLICATE_EVENT, event_id_field, Stage.SEMANTIC)
        return None

    def _check_location(
        self, record: Mapping[str, Any], lat_field: str, lon_field: str
    ) -> Rejected | None:
        lat, lon = record.get(lat_field), record.get(lon_field)
        if lat is None or lon is None:
            return None  # a nullable position left empty: nothing to place
        if not -90.0 <= lat <= 90.0:  # also false for NaN
            return Rejected(Reason.OUT_OF_RANGE, lat_field, Stage.SEMANTIC)
        if not -180.0 <= lon <= 180.0:
            return Rejected(Reason.OUT_OF_RANGE, lon_field, Stage.SEMANTIC)
        if not self._territory.contains(lon, lat):
            return Rejected(Reason.OUTSIDE_TERRITORY, f"{lat_field},{lon_field}", Stage.SEMANTIC)
        return None

    def _encode(self, record: Mapping[str, Any]) -> bytes:
        return self._write(record)

    def _accept(
        self, record: Mapping[str, Any], value: bytes, now_ms: int, connector: str
    ) -> Accepted:
        subject = record.get(self.stream.subject)
        key = b"" if subject is None else canonical_id(subject).encode()
        headers = self._headers.get((connector, now_ms))
        if headers is None:  # one set per connector and clock reading, copied per record
            if len(self._headers) > 64:
                self._headers.clear()
            headers = self._headers[connector, now_ms] = [
                *self._static_headers,
                (H_CONNECTOR, connector.encode()),
                (H_RECEIVED_AT, str(now_ms).encode()),
            ]
        return Accepted(key, value, headers.copy(), record[self.stream.event_time])


def parse_json(data: bytes) -> Any:
    """The decoded JSON value, or a ``Rejected`` (strict UTF-8, no NaN, no trailing data)."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        return Rejected(Reason.INVALID_UTF8, "", Stage.DECODE)
    try:
        # What _JSON.decode does, minus its two regex passes when nothing surrounds the
        # value; leading whitespace (StopIteration) takes the full decode.
        value, end = _SCAN(text, 0)
        if end != len(text) and text[end:].strip(_JSON_SPACE):
            return Rejected(Reason.MALFORMED_JSON, "", Stage.DECODE)
        return value
    except StopIteration:
        pass
    except (ValueError, RecursionError):
        return Rejected(Reason.MALFORMED_JSON, "", Stage.DECODE)
    try:
        return _JSON.decode(text)
    except (ValueError, RecursionError):
        return Rejected(Reason.MALFORMED_JSON, "", Stage.DECODE)


def _largest_field(record: Mapping[str, Any]) -> str:
    """The name of the record's biggest field (text and bytes by length), for the DLQ path."""

    def size(value: Any) -> int:
        if isinstance(value, str):
            return len(value.encode("utf-8", "replace"))
        if isinstance(value, bytes | bytearray):
            return len(value)
        return len(repr(value))

    return max(record, key=lambda name: size(record[name]), default="")


def _unit_hint(event_time: int, now_ms: int) -> str:
    """Say so when a time that is far off in ms is close to now in another unit."""
    for scale, unit in _UNITS:
        if abs(event_time * scale - now_ms) <= UNIT_HINT_WINDOW_MS:
            return f"the time looks like {unit}: send milliseconds"
    return ""


def dlq_record(
    original: bytes,
    rejected: Rejected,
    *,
    contract: Contract | str,
    stream: str,
    connector: str,
    source: str,
    now_ms: int,
) -> tuple[None, bytes, Headers]:
    """``(key, value, headers)`` of the dead-letter record for a rejected payload.

    The value is the original payload, cut to its first ``DLQ_MAX_VALUE_BYTES`` (the size and
    SHA-256 of the whole payload are headers, so a provider can match it); the headers say why
    (reason, field path, stage), where from (``source``: topic/partition/offset or an HTTP
    request id), through which connector, and when. No key: a rejected payload's
    subject is not trusted, and partitioning the DLQ by it would only spread raw values.
    """
    contract_id = contract if isinstance(contract, str) else contract.id
    headers: Headers = [
        (H_REASON, rejected.reason.value.encode()),
        (H_FIELD, rejected.field_path.encode()),
        (H_STAGE, rejected.stage.value.encode()),
        (H_SOURCE, source.encode()),
        (H_CONNECTOR, connector.encode()),
        (H_REJECTED_AT, str(now_ms).encode()),
        (H_CONTRACT, contract_id.encode()),
        (H_STREAM, stream.encode()),
    ]
    if not isinstance(contract, str):
        headers.append((H_CONTRACT_VERSION, str(contract.version).encode()))
    if rejected.detail:
        headers.append((H_DETAIL, rejected.detail.encode()))
    payload = bytes(original)
    headers.append((H_ORIGINAL_BYTES, str(len(payload)).encode()))
    headers.append((H_ORIGINAL_SHA256, hashlib.sha256(payload).hexdigest().encode()))
    return None, payload[:DLQ_MAX_VALUE_BYTES], headers


class Router:
    """The validators of a set of contracts, by (contract id, stream name)."""

    def __init__(
        self,
        contracts: Iterable[Contract],
        *,
        schemas: Schemas | None = None,
        max_bytes: int = DEFAULT_MAX_BYTES,
        future_skew: timedelta = DEFAULT_FUTURE_SKEW,
    ) -> None:
        contracts = list(contracts)
        self.schemas = schemas if schemas is not None else Schemas.from_contracts(contracts)
        self.contracts: dict[str, Contract] = {c.id: c for c in contracts}
        self.validators: dict[tuple[str, str], StreamValidator] = {
            (c.id, s.name): StreamValidator(
                c, s.name, schemas=self.schemas, max_bytes=max_bytes, future_skew=future_skew
            )
            for c in contracts
            for s in c.streams
        }

    def route(self, contract_id: str, stream: str) -> StreamValidator | Rejected:
        """The validator for the pair, or an UNKNOWN_CONTRACT / UNKNOWN_STREAM rejection."""
        validator = self.validators.get((contract_id, stream))
        if validator is not None:
            return validator
        if contract_id not in self.contracts:
            return Rejected(Reason.UNKNOWN_CONTRACT, "", Stage.ROUTE)
        return Rejected(Reason.UNKNOWN_STREAM, "", Stage.ROUTE)

    def validate(
        self,
        contract_id: str,
        stream: str,
        payload: bytes,
        *,
        now_ms: int,
        connector: str,
        source: str,
    ) -> Outcome:
        """Route, then ``StreamValidator.validate`` (format detected from the first byte)."""
        target = self.route(contract_id, stream)
        if isinstance(target, Rejected):
            return target
        return target.validate(payload, now_ms=now_ms, connector=connector, source=source)

    def validate_json(
        self,
        contract_id: str,
        stream: str,
        payload: bytes | Mapping[str, Any],
        *,
        now_ms: int,
        connector: str,
        source: str,
    ) -> Outcome:
        """Route, then ``StreamValidator.validate_json``."""
        target = self.route(contract_id, stream)
        if isinstance(target, Rejected):
            return target
        return target.validate_json(payload, now_ms=now_ms, connector=connector, source=source)

    def validate_avro(
        self,
        contract_id: str,
        stream: str,
        payload: bytes,
        *,
        now_ms: int,
        connector: str,
        source: str,
    ) -> Outcome:
        """Route, then ``StreamValidator.validate_avro``."""
        target = self.route(contract_id, stream)
        if isinstance(target, Rejected):
            return target
        return target.validate_avro(payload, now_ms=now_ms, connector=connector, source=source)
