"""Avro in the Confluent wire format, with schema ids every process derives on its own.

A value is ``0x00`` (magic byte), a 4-byte big-endian schema id, then the Avro binary body.
The schema id is not handed out by a registry: it is the first 4 bytes of the SHA-256 of the
schema's Parsing Canonical Form, masked to a positive 31-bit int. Every worker, connector and
auditor computes the same id from the same schema, so nothing has to be shared at run time;
a read-only Schema-Registry-compatible endpoint can serve ``Schemas`` later.

``decode`` is hardened for untrusted input (see research/reliability.md §2.3): fastavro
decodes trailing garbage silently and reports other damage with messages that quote bytes, so
every failure becomes a ``SerializationError`` holding a ``Reason`` and a field path only.
"""

from __future__ import annotations

import hashlib
import io
import struct
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar, cast

import fastavro
from fastavro.schema import to_parsing_canonical_form

from broker.kafka.avro_fast import BodyReader, BodyWriter, compile_reader, compile_writer
from broker.kafka.reasons import Reason
from contracts.errors import RespublicaError
from contracts.model import Contract, Stream

# What fastavro.parse_schema returns (fastavro.types.Schema); records are dicts.
ParsedSchema = dict[str, Any] | list[Any] | str
MAGIC = 0
HEADER_SIZE = 5
_HEADER = struct.Struct(">bI")
_ID_MASK = 0x7FFFFFFF
# What fastavro raises on damaged input (measured, fastavro 1.13): truncation, bad union or
# enum index, absurd lengths, bad floats. Anything else is caught by the callers' catch-all.
_DECODE_ERRORS = (
    EOFError,
    IndexError,
    ValueError,
    TypeError,
    OverflowError,
    struct.error,
    MemoryError,
    KeyError,
)


class SerializationError(RespublicaError):
    """A value could not be encoded or decoded. Carries a reason code and a field path only."""

    def __init__(self, reason: Reason, field_path: str = "") -> None:
        self.reason = reason
        self.field_path = field_path
        where = f" at {field_path}" if field_path else ""
        super().__init__(f"{reason.value}{where}")


def schema_id(raw_schema: Mapping[str, Any]) -> int:
    """The schema id of a schema: SHA-256 of its Parsing Canonical Form, 31 bits."""
    canonical = to_parsing_canonical_form(dict(raw_schema)).encode("utf-8")
    digest = hashlib.sha256(canonical).digest()
    return int.from_bytes(digest[:4], "big") & _ID_MASK


def subject_name(contract: Contract | str, stream: Stream | str) -> str:
    """The Schema Registry subject of a stream's values: ``raw.<c>.<s>-value``."""
    contract_id = contract if isinstance(contract, str) else contract.id
    stream_name = stream if isinstance(stream, str) else stream.name
    return f"raw.{contract_id}.{stream_name}-value"


@dataclass(frozen=True)
class RegisteredSchema:
    """A schema known to this process: its id, fastavro-parsed and raw forms, and subjects."""

    schema_id: int
    parsed: dict[str, Any]
    raw: dict[str, Any]
    subject: str  # the first subject it was registered under

    @property
    def header(self) -> bytes:
        """The 5-byte wire-format prefix of values written with this schema."""
        return _HEADER.pack(MAGIC, self.schema_id)


class Schemas:
    """An in-process schema registry: id -> schema, subject -> schema. Built from contracts."""

    def __init__(self) -> None:
        self._by_id: dict[int, RegisteredSchema] = {}
        self._by_subject: dict[str, RegisteredSchema] = {}

    @classmethod
    def from_contracts(cls, contracts: Iterable[Contract]) -> Schemas:
        """Register every stream schema of the contracts under ``raw.<c>.<s>-value``."""
        schemas = cls()
        for contract in contracts:
            for stream in contract.streams:
                schemas.register(
                    stream.raw_schema, subject_name(contract, stream), parsed=stream.avro_schema
                )
        return schemas

    def register(
        self, raw_schema: Mapping[str, Any], subject: str, *, parsed: dict[str, Any] | None = None
    ) -> RegisteredSchema:
        """Add a schema under a subject (idempotent); identical schemas share one id."""
        sid = schema_id(raw_schema)
        entry = self._by_id.get(sid)
        if entry is None:
            if parsed is None:
                parsed = cast(dict[str, Any], fastavro.parse_schema(dict(raw_schema)))
            entry = RegisteredSchema(sid, parsed, dict(raw_schema), subject)
            self._by_id[sid] = entry
        self._by_subject.setdefault(subject, entry)
        return entry

    def get(self, sid: int) -> RegisteredSchema | None:
        """The schema with this id, or None."""
        return self._by_id.get(sid)

    def by_subject(self, subject: str) -> RegisteredSchema | None:
        """The schema registered under ``subject``, or None."""
        return self._by_subject.get(subject)

    def for_stream(self, contract: Contract, stream: Stream | str) -> RegisteredSchema:
        """The schema of a contract's stream, registering it on first use."""
        subject = subject_name(contract, stream)
        entry = self._by_subject.get(subject)
        if entry is None:
            resolved = contract.stream(stream) if isinstance(stream, str) else stream
            entry = self.register(resolved.raw_schema, subject, parsed=resolved.avro_schema)
        return entry

    def subjects(self) -> dict[str, RegisteredSchema]:
        """Every subject and its schema."""
        return dict(self._by_subject)

    def __contains__(self, sid: object) -> bool:
        return sid in self._by_id

    def __iter__(self) -> Iterator[RegisteredSchema]:
        return iter(self._by_id.values())

    def __len__(self) -> int:
        return len(self._by_id)


def encode(parsed_schema: ParsedSchema, sid: int, record: Mapping[str, Any]) -> bytes:
    """A record as Confluent-framed Avro; ``SerializationError(AVRO_INVALID)`` if it misfits.

    Flat record schemas are written by a function compiled once per schema
    (``broker.kafka.avro_fast``, byte-identical to fastavro); others by fastavro.
    """
    try:
        return _HEADER.pack(MAGIC, sid) + body_writer(parsed_schema)(record)
    except (*_DECODE_ERRORS, AttributeError) as exc:
        # The writer's message quotes the offending value: keep only the reason.
        raise SerializationError(Reason.AVRO_INVALID) from exc


T = TypeVar("T")


def per_schema(build: Callable[[ParsedSchema], T]) -> Callable[[ParsedSchema], T]:
    """``build(parsed_schema)`` computed once per schema object, keyed by identity (parsed
    schemas live as long as their contracts; an entry keeps its schema alive, so no other
    object can take its id while it is cached)."""
    entries: dict[int, tuple[ParsedSchema, T]] = {}

    def get(parsed_schema: ParsedSchema) -> T:
        entry = entries.get(id(parsed_schema))
        if entry is None or entry[0] is not parsed_schema:
            entry = entries[id(parsed_schema)] = (parsed_schema, build(parsed_schema))
        return entry[1]

    return get


def body_writer(parsed_schema: ParsedSchema, *, prefix: bytes = b"") -> BodyWriter:
    """``prefix`` + the Avro body of a record: compiled for flat records, else fastavro.

    Without a prefix the writer is cached per schema object (``encode``); callers with a
    prefix (a validator's framing header) keep the writer they get.
    """
    if not prefix:
        return _cached_writer(parsed_schema)
    return _new_writer(parsed_schema, prefix)


def _new_writer(parsed_schema: ParsedSchema, prefix: bytes = b"") -> BodyWriter:
    writer = compile_writer(parsed_schema, prefix=prefix)
    return writer if writer is not None else _fastavro_writer(parsed_schema, prefix)


_cached_writer = per_schema(_new_writer)


def _fastavro_writer(parsed_schema: ParsedSchema, prefix: bytes) -> BodyWriter:
    def write(record: Mapping[str, Any]) -> bytes:
        buf = io.BytesIO()
        buf.write(prefix)
        fastavro.schemaless_writer(buf, parsed_schema, record)
        return buf.getvalue()

    return write


def read_header(data: bytes) -> int:
    """The schema id of a framed value; rejects short input and a wrong magic byte."""
    if len(data) < HEADER_SIZE:
        raise SerializationError(Reason.AVRO_TRUNCATED)
    magic, sid = _HEADER.unpack_from(data)
    if magic != MAGIC:
        raise SerializationError(Reason.AVRO_BAD_MAGIC)
    return int(sid)


def decode(data: bytes, schemas: Schemas) -> tuple[int, dict[str, Any]]:
    """``(schema_id, record)`` from a framed value, or ``SerializationError`` with a reason.

    Rejects empty or short input, a wrong magic byte, an unknown schema id, a truncated body,
    trailing bytes after a complete record, invalid UTF-8 and bad union or enum indexes.
    """
    sid = read_header(data)
    entry = schemas.get(sid)
    if entry is None:
        raise SerializationError(Reason.AVRO_UNKNOWN_SCHEMA)
    return sid, decode_body(data, entry.parsed)


def decode_body(data: bytes, parsed_schema: ParsedSchema) -> dict[str, Any]:
    """The record after the 5-byte header of ``data``, read with ``parsed_schema``.

    Flat record schemas are read by a function compiled once per schema
    (``broker.kafka.avro_fast``, giving fastavro's record); it raises on anything unusual, damaged
    input included, and fastavro then reads the value again and decides, reasons included.
    """
    read = _reader(parsed_schema)
    if read is not None:
        try:
            return read(data, HEADER_SIZE)
        except Exception:  # noqa: BLE001, S110 - not for the fast path: fastavro decides below
            pass
    return _fastavro_decode_body(data, parsed_schema)


_reader: Callable[[ParsedSchema], BodyReader | None] = per_schema(compile_reader)


def framed_decoder(parsed_schema: ParsedSchema, sid: int) -> Callable[[bytes], dict[str, Any]]:
    """``decode`` for values of one known schema, set up once: a consumer's per-record path.

    The returned function compares the 5-byte header with ``sid``'s as bytes and reads the
    body with the compiled reader, without ``decode``'s lookups per record; it accepts and
    refuses exactly what ``decode`` does with a registry holding only this schema (another
    schema id is ``AVRO_UNKNOWN_SCHEMA``).
    """
    header = _HEADER.pack(MAGIC, sid)
    read = _reader(parsed_schema)

    def decode_framed(data: bytes) -> dict[str, Any]:
        if data[:HEADER_SIZE] == header:
            if read is not None:
                try:
                    return read(data, HEADER_SIZE)
                except Exception:  # noqa: BLE001, S110 - not for the fast path: fastavro decides
                    pass
            return _fastavro_decode_body(data, parsed_schema)
        read_header(data)  # short input or a wrong magic byte: its own reason
        raise SerializationError(Reason.AVRO_UNKNOWN_SCHEMA)

    return decode_framed


def _fastavro_decode_body(data: bytes, parsed_schema: ParsedSchema) -> dict[str, Any]:
    """``decode_body`` by fastavro: other schemas, and the authority on every failure."""
    buf = io.BytesIO(data)
    buf.seek(HEADER_SIZE)
    try:
        record = fastavro.schemaless_reader(buf, parsed_schema, None)
    except UnicodeDecodeError as exc:  # before ValueError: it is one
        raise _failure(Reason.INVALID_UTF8, data, parsed_schema) from exc
    except EOFError as exc:
        raise _failure(Reason.AVRO_TRUNCATED, data, parsed_schema) from exc
    except _DECODE_ERRORS as exc:
        raise _failure(Reason.AVRO_INVALID, data, parsed_schema) from exc
    if buf.tell() != len(data):
        raise SerializationError(Reason.AVRO_TRAILING_BYTES)
    if not isinstance(record, dict):
        raise SerializationError(Reason.AVRO_INVALID)
    return record


def _failure(reason: Reason, data: bytes, parsed_schema: ParsedSchema) -> SerializationError:
    """The error for a failed decode, naming the field where it broke (slow path, errors only).

    fastavro reports a varint cut short as an ``IndexError``, like a bad union index; when the
    failing field ran into the end of the input, the payload is truncated rather than invalid.
    """
    field, exhausted = _failing_field(data, parsed_schema)
    if reason is Reason.AVRO_INVALID and exhausted:
        reason = Reason.AVRO_TRUNCATED
    return SerializationError(reason, field)


def _failing_field(data: bytes, parsed_schema: ParsedSchema) -> tuple[str, bool]:
    """The top-level field where decoding breaks ("" if unknown), and if input ran out there."""
    buf = io.BytesIO(data)
    buf.seek(HEADER_SIZE)
    for name, field_schema in _field_schemas(parsed_schema):
        try:
            fastavro.schemaless_reader(buf, field_schema, None)
        except Exception:  # any failure here locates the field, nothing more
            return name, buf.tell() >= len(data)
    return "", False


def _split_fields(parsed_schema: ParsedSchema) -> list[tuple[str, Any]]:
    """Per-field schemas of a record schema (for naming the field a decode failed in)."""
    result: list[tuple[str, Any]] = []
    if not isinstance(parsed_schema, dict):
        return result
    fields = parsed_schema.get("fields")
    named = parsed_schema.get("__named_schemas", {})
    if parsed_schema.get("type") == "record" and isinstance(fields, list):
        try:
            result = [
                (str(f["name"]), fastavro.parse_schema(f["type"], named_schemas=dict(named)))
                for f in fields
            ]
        except Exception:  # a schema shape we cannot split per field: no path, still rejected
            result = []
    return result


_field_schemas = per_schema(_split_fields)
