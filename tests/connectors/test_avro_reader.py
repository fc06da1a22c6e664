"""The compiled Avro reader (``broker.kafka.avro_fast.compile_reader``) reads what fastavro reads.

Valid records of every contract schema and of hypothesis-generated flat schemas, edge values
(int64 limits, NaN and infinities, empty and non-ASCII strings, every varint length): the
compiled reader must return fastavro's record, value for value and type for type. Damaged
input (every truncation, random bytes and mutations, bad union and enum indexes, trailing
bytes) must give, through ``decode_body``, exactly the outcome of the fastavro-only
``decode_body`` kept below as a reference: the same record, or the same reason and field.
"""

from __future__ import annotations

import io
import json
import math
import random
import struct
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import fastavro
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from broker.kafka import serde
from broker.kafka.avro_fast import compile_reader, long_at, varint
from broker.kafka.reasons import Reason
from broker.kafka.serde import HEADER_SIZE, SerializationError, decode_body

pytestmark = pytest.mark.unit

SCHEMA_DIR = Path(__file__).resolve().parents[2] / "contracts" / "schemas"
SCHEMA_FILES = sorted(SCHEMA_DIR.glob("*.avsc"))
HEADER = b"\x00\x00\x00\x30\x39"
LONG_MIN, LONG_MAX = -(2**63), 2**63 - 1


def _reference_decode_body(data: bytes, parsed_schema: Any) -> dict[str, Any]:
    """``decode_body`` as it was before the compiled reader: fastavro and a BytesIO only."""
    buf = io.BytesIO(data)
    buf.seek(HEADER_SIZE)
    try:
        record = fastavro.schemaless_reader(buf, parsed_schema, None)
    except UnicodeDecodeError as exc:
        raise serde._failure(Reason.INVALID_UTF8, data, parsed_schema) from exc
    except EOFError as exc:
        raise serde._failure(Reason.AVRO_TRUNCATED, data, parsed_schema) from exc
    except serde._DECODE_ERRORS as exc:
        raise serde._failure(Reason.AVRO_INVALID, data, parsed_schema) from exc
    if buf.tell() != len(data):
        raise SerializationError(Reason.AVRO_TRAILING_BYTES)
    if not isinstance(record, dict):
        raise SerializationError(Reason.AVRO_INVALID)
    return record


def _outcome(
    decoder: Callable[[bytes, Any], dict[str, Any]], data: bytes, schema: Any
) -> tuple[Any, ...]:
    """A comparable outcome: ("ok", record) or (exception type, reason, field path)."""
    try:
        return "ok", _comparable(decoder(data, schema))
    except SerializationError as exc:
        return SerializationError, exc.reason, exc.field_path
    except Exception as exc:  # noqa: BLE001 - whatever the reference raises, so must we
        return type(exc), None, None


def _comparable(record: Mapping[str, Any]) -> list[tuple[str, type, Any]]:
    """Field order, value types and values; NaN as a marker, since NaN != NaN."""
    return [
        (name, type(value), "NaN" if isinstance(value, float) and math.isnan(value) else value)
        for name, value in record.items()
    ]


def _same_as_reference(data: bytes, schema: Any) -> tuple[Any, ...]:
    expected = _outcome(_reference_decode_body, data, schema)
    assert _outcome(decode_body, data, schema) == expected
    return expected


def _framed(schema: Any, record: Mapping[str, Any]) -> bytes:
    buf = io.BytesIO()
    buf.write(HEADER)
    fastavro.schemaless_writer(buf, schema, record)
    return buf.getvalue()


def _fastavro_read(schema: Any, data: bytes) -> dict[str, Any]:
    buf = io.BytesIO(data)
    buf.seek(HEADER_SIZE)
    record: dict[str, Any] = fastavro.schemaless_reader(buf, schema, None)
    assert buf.tell() == len(data)
    return record


def _compiled(schema: Any) -> Callable[[bytes, int], dict[str, Any]]:
    reader = compile_reader(schema)
    assert reader is not None
    return reader


def _schema(*fields: tuple[str, Any]) -> dict[str, Any]:
    raw = {
        "type": "record",
        "name": "R",
        "fields": [{"name": name, "type": kind} for name, kind in fields],
    }
    parsed: dict[str, Any] = fastavro.parse_schema(raw)
    return parsed


def _contract_schema(path: Path) -> dict[str, Any]:
    parsed: dict[str, Any] = fastavro.parse_schema(json.loads(path.read_text()))
    return parsed


CONTRACT_SCHEMAS = {path.stem: _contract_schema(path) for path in SCHEMA_FILES}


# --- Values -----------------------------------------------------------------------------------

_TEXT = st.text(max_size=90) | st.sampled_from(["", "é", "日本語", "🛴 scooter", "a" * 70])
_STRATEGIES: dict[str, st.SearchStrategy[Any]] = {
    "boolean": st.booleans(),
    "int": st.integers(-(2**31), 2**31 - 1),
    "long": st.integers(LONG_MIN, LONG_MAX) | st.integers(1_600_000_000_000, 2_000_000_000_000),
    "float": st.floats(width=32),
    "double": st.floats(),
    "string": _TEXT,
    "bytes": st.binary(max_size=90),
}


def _value_for(field_type: Any) -> st.SearchStrategy[Any]:
    if isinstance(field_type, list):
        branch = next(t for t in field_type if t != "null")
        return st.none() | _value_for(branch)
    if isinstance(field_type, dict):
        if field_type["type"] == "enum":
            return st.sampled_from(field_type["symbols"])
        return _value_for(field_type["type"])
    return _STRATEGIES[field_type]


def _records_of(schema: Mapping[str, Any]) -> st.SearchStrategy[dict[str, Any]]:
    return st.fixed_dictionaries({f["name"]: _value_for(f["type"]) for f in schema["fields"]})


def _assert_reads_as_fastavro(schema: Any, record: Mapping[str, Any]) -> bytes:
    data = _framed(schema, record)
    expected = _comparable(_fastavro_read(schema, data))
    assert _comparable(_compiled(schema)(data, HEADER_SIZE)) == expected
    assert _comparable(decode_body(data, schema)) == expected
    return data


# --- Valid records ----------------------------------------------------------------------------


def test_every_contract_schema_compiles() -> None:
    assert {"mds_vehicle_event", "mds_trip"} <= set(CONTRACT_SCHEMAS)
    for name, schema in CONTRACT_SCHEMAS.items():
        assert compile_reader(schema) is not None, name


@pytest.mark.parametrize("name", sorted(CONTRACT_SCHEMAS))
def test_contract_schema_records_read_as_fastavro_reads_them(name: str) -> None:
    schema = CONTRACT_SCHEMAS[name]

    @settings(max_examples=150, deadline=None)
    @given(_records_of(schema))
    def check(record: dict[str, Any]) -> None:
        _assert_reads_as_fastavro(schema, record)

    check()


_SCALAR = st.sampled_from(["boolean", "int", "long", "float", "double", "string", "bytes"])
_FIELD_TYPE = st.one_of(
    _SCALAR,
    st.just("null"),
    st.just({"type": "enum", "symbols": ["a", "b", "c"]}),
    _SCALAR.map(lambda t: ["null", t]),
    _SCALAR.map(lambda t: [t, "null"]),
    st.just(["null", {"type": "enum", "symbols": ["x", "y"]}]),
)


def _named(kind: Any, number: int) -> Any:
    """Enums need a name, unique in the schema."""
    if isinstance(kind, dict):
        return {**kind, "name": f"E{number}"}
    if isinstance(kind, list):
        return [_named(k, number) for k in kind]
    return kind


@st.composite
def _flat_schema_and_record(draw: st.DrawFn) -> tuple[dict[str, Any], dict[str, Any]]:
    kinds = draw(st.lists(_FIELD_TYPE, min_size=1, max_size=10))
    schema = _schema(*((f"f{i}", _named(kind, i)) for i, kind in enumerate(kinds)))
    record = {
        f["name"]: draw(_value_for(f["type"]) if f["type"] != "null" else st.none())
        for f in schema["fields"]
    }
    return schema, record


@settings(max_examples=400, deadline=None)
@given(_flat_schema_and_record())
def test_flat_schema_records_read_as_fastavro_reads_them(
    case: tuple[dict[str, Any], dict[str, Any]],
) -> None:
    schema, record = case
    data = _assert_reads_as_fastavro(schema, record)
    _same_as_reference(data, schema)


@pytest.mark.parametrize(
    "value",
    [
        0,
        -1,
        1,
        63,
        -64,
        64,
        -65,
        8191,
        8192,
        2**31 - 1,
        -(2**31),
        2**31,
        1_780_315_199_000,
        -1_780_315_199_000,
        2**34,
        2**41 - 1,
        2**41,
        LONG_MAX,
        LONG_MIN,
        LONG_MAX - 1,
        LONG_MIN + 1,
        *(2**k for k in range(0, 63, 7)),
        *(-(2**k) for k in range(0, 63, 7)),
    ],
)
def test_longs_of_every_varint_length(value: int) -> None:
    schema = _schema(("a", "long"), ("b", "long"), ("c", "int"), ("t", ["null", "long"]))
    small = max(-(2**31), min(2**31 - 1, value))
    _assert_reads_as_fastavro(
        schema, {"a": value, "b": -value if value > LONG_MIN else 0, "c": small, "t": value}
    )
    # A long last in the record (no room to unpack six bytes at once) reads the same.
    _assert_reads_as_fastavro(_schema(("last", "long")), {"last": value})


@pytest.mark.parametrize(
    "value", [0.0, -0.0, 1.5, -2.25, math.inf, -math.inf, math.nan, 5e-324, 1.7976931348623157e308]
)
def test_doubles_and_floats_including_nan_and_infinities(value: float) -> None:
    schema = _schema(
        ("d", "double"), ("e", "double"), ("f", "float"), ("n", ["null", "double"]), ("g", "float")
    )
    as_float = value if math.isnan(value) or abs(value) < 3e38 else math.copysign(math.inf, value)
    _assert_reads_as_fastavro(
        schema, {"d": value, "e": -value, "f": as_float, "n": value, "g": as_float}
    )
    _assert_reads_as_fastavro(schema, {"d": value, "e": value, "f": 0.0, "n": None, "g": 0.0})


@pytest.mark.parametrize(
    "text",
    [
        "",
        "a",
        "é",
        "€uro",
        "日本語のテキスト",
        "🛴🚲",
        "x" * 63,
        "x" * 64,
        "é" * 40,
        "y" * 8191,
        "z" * 8192,
        "\x00nul inside",
        "line\nbreak",
    ],
)
def test_strings_empty_non_ascii_and_of_every_length_size(text: str) -> None:
    schema = _schema(
        ("s", "string"), ("n", ["null", "string"]), ("r", ["string", "null"]), ("b", "bytes")
    )
    _assert_reads_as_fastavro(schema, {"s": text, "n": text, "r": text, "b": text.encode("utf-8")})
    _assert_reads_as_fastavro(schema, {"s": text, "n": None, "r": None, "b": b""})


def test_null_branches_enums_and_booleans() -> None:
    schema = _schema(
        ("u", ["null", "int"]),
        ("v", ["int", "null"]),
        ("z", "null"),
        ("e", {"type": "enum", "name": "E", "symbols": [f"s{i}" for i in range(70)]}),
        ("ok", "boolean"),
        ("maybe", ["null", "boolean"]),
    )
    for u, v, e, ok, maybe in [
        (None, None, "s0", True, None),
        (1, -1, "s63", False, True),
        (-300, 300, "s64", True, False),
        (0, 0, "s69", False, None),
    ]:
        _assert_reads_as_fastavro(
            schema, {"u": u, "v": v, "z": None, "e": e, "ok": ok, "maybe": maybe}
        )


def test_a_vehicle_event_never_reaches_fastavro(monkeypatch: pytest.MonkeyPatch) -> None:
    schema = CONTRACT_SCHEMAS["mds_vehicle_event"]
    record = {
        "event_id": "evt-1",
        "vehicle_id": "veh-1",
        "provider_id": "p",
        "vehicle_type": "scooter_standing",
        "propulsion": "electric",
        "event_type": "available",
        "timestamp": 1_780_315_199_000,
        "lat": 45.75,
        "lon": 4.83,
        "battery_pct": 80,
        "trip_id": "trip-1",
    }
    data = _framed(schema, record)

    class NoFastavro:
        @staticmethod
        def schemaless_reader(*args: Any, **kwargs: Any) -> None:
            raise AssertionError("the compiled path should have read this record")

    monkeypatch.setattr(serde, "fastavro", NoFastavro)
    assert decode_body(data, schema) == record


def test_decode_body_compiles_once_per_schema(monkeypatch: pytest.MonkeyPatch) -> None:
    schema = _schema(("n", "long"), ("s", "string"))
    calls: list[Any] = []

    def counting(parsed: Any) -> Any:
        calls.append(parsed)
        return compile_reader(parsed)

    monkeypatch.setattr(serde, "_reader", serde.per_schema(counting))
    data = _framed(schema, {"n": 5, "s": "x"})
    for _ in range(3):
        assert decode_body(data, schema) == {"n": 5, "s": "x"}
    assert calls == [schema]


# --- Unsupported schemas ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "field_type",
    [
        {"type": "record", "name": "Inner", "fields": [{"name": "n", "type": "long"}]},
        {"type": "array", "items": "long"},
        {"type": "map", "values": "string"},
        {"type": "fixed", "name": "F", "size": 4},
        {"type": "long", "logicalType": "timestamp-millis"},
        {"type": "int", "logicalType": "date"},
        {"type": "string", "logicalType": "uuid"},
        {"type": "bytes", "logicalType": "decimal", "precision": 5, "scale": 2},
        ["null", "int", "string"],
        ["int", "string"],
        ["null", {"type": "array", "items": "int"}],
    ],
)
def test_schemas_beyond_flat_records_are_not_compiled(field_type: Any) -> None:
    schema = _schema(("x", field_type))
    assert compile_reader(schema) is None


@pytest.mark.parametrize(
    "schema", ["long", ["null", "string"], {"type": "enum", "name": "E", "symbols": ["a"]}]
)
def test_non_record_schemas_are_not_compiled(schema: Any) -> None:
    assert compile_reader(fastavro.parse_schema(schema)) is None


def test_uncompiled_schemas_still_decode_through_fastavro() -> None:
    schema = _schema(
        ("t", {"type": "long", "logicalType": "timestamp-millis"}),
        ("xs", {"type": "array", "items": "int"}),
    )
    record = {"t": 1_780_315_199_000, "xs": [1, 2, 3]}
    data = _framed(schema, record)
    assert decode_body(data, schema) == _fastavro_read(schema, data)
    _same_as_reference(data + b"\x00", schema)


# --- Damaged input ----------------------------------------------------------------------------


def _sample(schema: Mapping[str, Any], seed: int) -> dict[str, Any]:
    """A valid record with a null and a non-null value in the unions, by seed."""
    rng = random.Random(seed)
    examples: dict[str, Any] = {
        "string": "évènement-42",
        "long": 1_780_315_199_000,
        "int": 80,
        "double": 45.7578,
        "float": 1.5,
        "boolean": True,
        "bytes": b"\x00\xff",
    }
    record = {}
    for field in schema["fields"]:
        kind = field["type"]
        if isinstance(kind, list):
            branch = next(t for t in kind if t != "null")
            record[field["name"]] = None if rng.random() < 0.5 else examples[branch]
        else:
            record[field["name"]] = examples[kind]
    return record


@pytest.mark.parametrize("name", sorted(CONTRACT_SCHEMAS))
def test_every_truncation_fails_as_fastavro_fails(name: str) -> None:
    schema = CONTRACT_SCHEMAS[name]
    outcomes = set()
    for seed in range(4):
        data = _framed(schema, _sample(schema, seed))
        for cut in range(len(data)):
            outcome = _same_as_reference(data[:cut], schema)
            outcomes.add(outcome[1] if outcome[0] is SerializationError else outcome[0])
    assert Reason.AVRO_TRUNCATED in outcomes


@pytest.mark.parametrize("name", sorted(CONTRACT_SCHEMAS))
def test_trailing_bytes_fail_as_fastavro_fails(name: str) -> None:
    schema = CONTRACT_SCHEMAS[name]
    data = _framed(schema, _sample(schema, 1))
    for extra in (b"\x00", b"\x02a", b"\xff" * 12):
        assert _same_as_reference(data + extra, schema) == (
            SerializationError,
            Reason.AVRO_TRAILING_BYTES,
            "",
        )


def test_bad_union_indexes_fail_or_read_as_fastavro_does() -> None:
    schema = CONTRACT_SCHEMAS["mds_vehicle_event"]
    record = {**_sample(schema, 0), "battery_pct": 80, "trip_id": None}
    data = _framed(schema, record)
    assert data.endswith(b"\x02\xa0\x01\x00")  # battery_pct: branch 1, 80; trip_id: null
    head = data[:-4]
    # 2, 3, -2: no such branch; -1: fastavro takes the last branch (Python indexing);
    # 0x80 0x00: branch 0 written in two bytes. Whatever fastavro does, decode_body does.
    for index in (b"\x04", b"\x06", b"\x03", b"\x01", b"\x80\x00", b"\x82\x00", b"\xff" * 11):
        _same_as_reference(head + index + b"\xa0\x01\x00", schema)
        _same_as_reference(head + b"\x00" + index + b"\x02x", schema)
    assert _same_as_reference(head + b"\x04\xa0\x01\x00", schema) == (
        SerializationError,
        Reason.AVRO_INVALID,
        "battery_pct",
    )


def test_bad_enum_indexes_booleans_and_lengths_fail_or_read_as_fastavro_does() -> None:
    schema = _schema(
        ("e", {"type": "enum", "name": "E", "symbols": ["a", "b"]}),
        ("ok", "boolean"),
        ("s", "string"),
        ("n", "long"),
    )
    for enum_index in (b"\x00", b"\x02", b"\x04", b"\x01", b"\x03", b"\x80\x00", b"\x84\x00"):
        _same_as_reference(HEADER + enum_index + b"\x01\x02x\x00", schema)
    for boolean in (b"\x00", b"\x01", b"\x02", b"\xff"):  # fastavro: any non-zero is True
        _same_as_reference(HEADER + b"\x00" + boolean + b"\x02x\x00", schema)
    for length in (b"\x01", b"\x03", b"\x04", b"\x7f", b"\x80\x00", b"\x82\x00", b"\xff\x01"):
        _same_as_reference(HEADER + b"\x00\x01" + length + b"xy\x00", schema)
        _same_as_reference(HEADER + b"\x00\x01" + length + b"x", schema)  # past the end


def test_negative_lengths_fail_or_read_as_fastavro_does() -> None:
    # fastavro reads what remains for a negative length; a reader stepping back instead
    # could read these as a whole record (s="", n=-1).
    for kind in ("string", "bytes"):
        schema = _schema(("s", kind), ("n", "long"))
        for body in (b"\x01", b"\x03\x01", b"\x01\x02", b"\xff\x01\x02", b"\x03ab"):
            _same_as_reference(HEADER + body, schema)


@pytest.mark.parametrize(
    "encoded",
    [
        b"\x80" * 10 + b"\x00",
        b"\xff" * 9 + b"\x01",
        b"\xff" * 9 + b"\x02",
        b"\xff" * 9 + b"\x7f",
        b"\xfe" + b"\xff" * 8 + b"\x01",
        b"\xff" * 10 + b"\x01",
        b"\xff" * 15,
        b"\x80\x00",
        b"\x81\x80\x80\x80\x80\x00",
        b"\xff" * 5 + b"\x7f",
        b"\xff" * 6,
        b"\x80" * 5 + b"\x00",
    ],
)
def test_odd_and_overlong_varints_read_as_fastavro_does(encoded: bytes) -> None:
    for schema in (
        _schema(("n", "long"), ("d", "double")),
        _schema(("n", "long")),
        _schema(("n", "int"), ("s", "string")),
    ):
        rest = {"d": struct.pack("<d", 2.5), "s": b"\x02z"}
        tail = b"".join(rest[f["name"]] for f in schema["fields"][1:])
        _same_as_reference(HEADER + encoded + tail, schema)


def test_invalid_utf8_fails_as_fastavro_fails() -> None:
    schema = CONTRACT_SCHEMAS["mds_vehicle_event"]
    data = _framed(schema, {**_sample(schema, 0), "vehicle_id": "veh-X", "trip_id": "t"})
    for bad in (b"\xff", b"\xc3", b"\xed", b"\x80"):  # \xed\xa0..: an encoded surrogate
        broken = data.replace(b"veh-X", b"veh-" + bad)
        assert _same_as_reference(broken, schema) == (
            SerializationError,
            Reason.INVALID_UTF8,
            "vehicle_id",
        )
    surrogate = data.replace(b"\x0aveh-X", b"\x0eveh-\xed\xa0\x80")
    assert _same_as_reference(surrogate, schema)[1] is Reason.INVALID_UTF8


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(sorted(CONTRACT_SCHEMAS)), st.binary(max_size=120))
def test_random_bytes_fail_or_read_as_fastavro_does(name: str, body: bytes) -> None:
    _same_as_reference(HEADER + body, CONTRACT_SCHEMAS[name])


@settings(max_examples=400, deadline=None)
@given(
    st.sampled_from(sorted(CONTRACT_SCHEMAS)),
    st.integers(0, 3),
    st.lists(
        st.tuples(st.integers(0, 2), st.integers(0, 200), st.binary(min_size=1, max_size=4)),
        min_size=1,
        max_size=3,
    ),
)
def test_mutated_records_fail_or_read_as_fastavro_does(
    name: str, seed: int, edits: list[tuple[int, int, bytes]]
) -> None:
    schema = CONTRACT_SCHEMAS[name]
    buf = bytearray(_framed(schema, _sample(schema, seed)))
    for kind, at, chunk in edits:
        at = HEADER_SIZE + at % (len(buf) - HEADER_SIZE + 1)
        if kind == 0:  # overwrite
            buf[at : at + len(chunk)] = chunk
        elif kind == 1:  # insert
            buf[at:at] = chunk
        else:  # delete
            del buf[at : at + len(chunk)]
    _same_as_reference(bytes(buf), schema)


@settings(max_examples=300, deadline=None)
@given(_flat_schema_and_record(), st.data())
def test_damaged_flat_schema_records_fail_or_read_as_fastavro_does(
    case: tuple[dict[str, Any], dict[str, Any]], data: st.DataObject
) -> None:
    schema, record = case
    framed = _framed(schema, record)
    cut = data.draw(st.integers(0, len(framed)))
    _same_as_reference(framed[:cut], schema)
    at = data.draw(st.integers(HEADER_SIZE, len(framed)))
    _same_as_reference(
        framed[:at] + data.draw(st.binary(min_size=1, max_size=3)) + framed[at:], schema
    )


def test_short_input_and_header_only_fail_as_before() -> None:
    schema = CONTRACT_SCHEMAS["mds_trip"]
    for data in (b"", b"\x00", HEADER[:4], HEADER):
        _same_as_reference(data, schema)
    _same_as_reference(HEADER, _schema(("z", "null")))


# --- The varint helper --------------------------------------------------------------------------


@given(st.integers(LONG_MIN, LONG_MAX))
def test_long_at_inverts_the_writers_varint(n: int) -> None:
    encoded = varint((n << 1) ^ (n >> 63))
    assert long_at(b"\x07" + encoded + b"\x09", 1) == (n, 1 + len(encoded))


# --- The per-stream decoder of consumers ---------------------------------------------------------


def _decode_outcome(decoder: Callable[[bytes], Any], data: bytes) -> tuple[Any, ...]:
    try:
        return "ok", _comparable(decoder(data))
    except SerializationError as exc:
        return SerializationError, exc.reason, exc.field_path


@settings(max_examples=300, deadline=None)
@given(
    st.sampled_from(sorted(CONTRACT_SCHEMAS)),
    st.integers(0, 3),
    st.sampled_from([b"", HEADER, b"\x00\x00\x00\x30\x3a", b"\x01\x00\x00\x30\x39", b"\x00\x00"]),
    st.integers(0, 200),
    st.binary(max_size=4),
)
def test_framed_decoder_decides_as_decode_with_one_schema(
    name: str, seed: int, header: bytes, at: int, chunk: bytes
) -> None:
    """``framed_decoder`` (the worker's raw path) accepts and refuses what ``decode`` does
    with a registry of that one schema: valid and damaged bodies, other ids, short input."""
    schema = CONTRACT_SCHEMAS[name]
    registry = serde.Schemas()
    entry = registry.register(schema, "s", parsed=schema)
    body = _framed(schema, _sample(schema, seed))[HEADER_SIZE:]
    own = entry.header
    decoder = serde.framed_decoder(schema, entry.schema_id)
    damaged = body[:at] + chunk + body[at + len(chunk) // 2 :]
    for data in (own + body, own + damaged, header + body, header, own[: at % 6]):
        expected = _decode_outcome(lambda d: serde.decode(d, registry)[1], data)
        assert _decode_outcome(decoder, data) == expected
