"""The compiled Avro writer (``broker.kafka.avro_fast``) writes exactly what fastavro writes.

Known-answer vectors from the Avro spec, every simulated record of every example stream, and
hypothesis-generated flat schemas with values of the right and of the wrong types: the
compiled writer must give fastavro's bytes, or fail where fastavro fails.
"""

from __future__ import annotations

import io
import math
from collections.abc import Mapping
from typing import Any

import fastavro
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from broker.kafka.avro_fast import compile_writer, varint
from broker.kafka.serde import Schemas, SerializationError, body_writer, encode
from connectors.simulate import SimOptions, simulator, take
from contracts import Contract

pytestmark = pytest.mark.unit


def _fastavro(schema: Any, record: Mapping[str, Any]) -> bytes:
    buf = io.BytesIO()
    fastavro.schemaless_writer(buf, schema, record)
    return buf.getvalue()


def _schema(*fields: tuple[str, Any]) -> dict[str, Any]:
    raw = {
        "type": "record",
        "name": "R",
        "fields": [{"name": name, "type": kind} for name, kind in fields],
    }
    parsed: dict[str, Any] = fastavro.parse_schema(raw)
    return parsed


@pytest.mark.parametrize(
    ("kind", "value", "expected"),
    [
        ("long", 0, b"\x00"),
        ("long", -1, b"\x01"),
        ("long", 1, b"\x02"),
        ("long", 64, b"\x80\x01"),
        ("long", -65, b"\x81\x01"),
        ("int", 2**31 - 1, b"\xfe\xff\xff\xff\x0f"),
        ("long", -(2**63), b"\xff" * 9 + b"\x01"),
        ("double", 1.0, b"\x00\x00\x00\x00\x00\x00\xf0?"),
        ("float", 1.0, b"\x00\x00\x80?"),
        ("string", "a", b"\x02a"),
        ("string", "é", b"\x04\xc3\xa9"),
        ("bytes", b"\x00", b"\x02\x00"),
        ("boolean", True, b"\x01"),
        (["null", "int"], None, b"\x00"),
        (["null", "int"], 3, b"\x02\x06"),
        (["string", "null"], None, b"\x02"),
        ({"type": "enum", "name": "E", "symbols": ["a", "b"]}, "b", b"\x02"),
    ],
)
def test_known_answers(kind: Any, value: Any, expected: bytes) -> None:
    schema = _schema(("x", kind))
    writer = compile_writer(schema, prefix=b"P")
    assert writer is not None
    assert writer({"x": value}) == b"P" + expected == b"P" + _fastavro(schema, {"x": value})


def _varint_reference(n: int) -> bytes:
    out = bytearray()
    while True:
        low, n = n & 0x7F, n >> 7
        out.append(low | (0x80 if n else 0))
        if not n:
            return bytes(out)


@given(
    st.integers(min_value=0, max_value=2**64 - 1)
    | st.sampled_from([2**k + d for k in range(0, 64, 7) for d in (-1, 0, 1) if 2**k + d >= 0])
)
def test_varint_matches_the_definition(n: int) -> None:
    assert varint(n) == _varint_reference(n)
    assert varint(300) == b"\xac\x02"


def test_every_simulated_record_of_every_example_stream_is_byte_identical(
    examples: dict[str, Contract],
) -> None:
    schemas = Schemas.from_contracts(examples.values())
    checked = 0
    for name in ("mobility", "rentals", "navigation"):
        for stream, record in take(simulator(name, SimOptions(seed=11)).records(), 3_000):
            contract = next(
                c for c in examples.values() if any(s.name == stream for s in c.streams)
            )
            entry = schemas.for_stream(contract, stream)
            writer = compile_writer(entry.parsed)
            assert writer is not None  # our contract schemas are all flat
            assert writer(record) == _fastavro(entry.parsed, record)
            assert encode(entry.parsed, entry.schema_id, record) == entry.header + writer(record)
            checked += 1
    assert checked == 9_000


def test_schemas_beyond_flat_records_are_left_to_fastavro() -> None:
    nested = _schema(
        ("inner", {"type": "record", "name": "I", "fields": [{"name": "n", "type": "long"}]})
    )
    logical = _schema(("t", {"type": "long", "logicalType": "timestamp-millis"}))
    wide_union = _schema(("u", ["null", "int", "string"]))
    for schema in (nested, logical, wide_union, "long"):
        assert compile_writer(schema) is None
    record = {"inner": {"n": 5}}
    assert body_writer(nested)(record) == _fastavro(nested, record)  # fastavro behind it


def test_misfits_fail_as_fastavro_fails_and_its_leniencies_stay() -> None:
    schema = _schema(("n", "int"), ("s", "string"))
    for record in ({"n": "1", "s": "a"}, {"n": 1, "s": "\ud800"}, {"s": "a"}):
        with pytest.raises(SerializationError):
            encode(schema, 1, record)
    # fastavro writes these (an int beyond 32 bits, a bool, a whole float): so do we.
    for record in ({"n": 2**40, "s": "a"}, {"n": True, "s": "a"}, {"n": 1.0, "s": "a"}):
        assert encode(schema, 1, record)[5:] == _fastavro(schema, record)


_SCALAR = st.sampled_from(["boolean", "int", "long", "float", "double", "string", "bytes"])
_ENUM = st.just({"type": "enum", "name": "E", "symbols": ["a", "b", "c"]})
_FIELD_TYPE = st.one_of(
    _SCALAR, _ENUM, _SCALAR.map(lambda t: ["null", t]), _SCALAR.map(lambda t: [t, "null"])
)
_ANY_VALUE = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=80),
    st.binary(max_size=80),
    st.sampled_from(["a", "b", "c", "d"]),
)


def _value_for(kind: Any) -> st.SearchStrategy[Any]:
    if isinstance(kind, list):
        return st.one_of(st.none(), _value_for(next(k for k in kind if k != "null")))
    if isinstance(kind, dict):
        return st.sampled_from(kind["symbols"])
    return {
        "boolean": st.booleans(),
        "int": st.integers(min_value=-(2**31), max_value=2**31 - 1),
        "long": st.integers(min_value=-(2**63), max_value=2**63 - 1),
        "float": st.floats(width=32, allow_nan=False),
        "double": st.floats(allow_nan=False) | st.integers(-(2**53), 2**53),
        "string": st.text(max_size=100),
        "bytes": st.binary(max_size=100),
    }[kind]


@st.composite
def _schema_and_record(draw: st.DrawFn) -> tuple[dict[str, Any], dict[str, Any]]:
    kinds = [
        {**kind, "name": f"E{i}"} if isinstance(kind, dict) else kind  # unique names
        for i, kind in enumerate(draw(st.lists(_FIELD_TYPE, min_size=1, max_size=8)))
    ]
    schema = _schema(*((f"f{i}", kind) for i, kind in enumerate(kinds)))
    record = {}
    for i, kind in enumerate(kinds):
        # Mostly values that fit; now and then any value at all (a misfit or a surprise).
        strategy = _ANY_VALUE if draw(st.integers(0, 9)) == 0 else _value_for(kind)
        record[f"f{i}"] = draw(strategy)
    return schema, record


@settings(max_examples=400, deadline=None)
@given(_schema_and_record())
def test_compiled_writer_equals_fastavro(case: tuple[dict[str, Any], dict[str, Any]]) -> None:
    schema, record = case
    writer = compile_writer(schema)
    assert writer is not None
    try:
        expected: bytes | type[BaseException] = _fastavro(schema, record)
    except Exception as exc:  # noqa: BLE001 - whatever fastavro raises, ours must raise too
        expected = type(exc)
    if isinstance(expected, bytes):
        assert writer(record) == expected
    else:
        with pytest.raises(expected):
            writer(record)


@settings(max_examples=200, deadline=None)
@given(st.floats(allow_nan=True, allow_infinity=True, width=64))
def test_every_double_including_nan_and_infinities(x: float) -> None:
    schema = _schema(("a", "double"), ("b", "double"), ("c", "float"))
    writer = compile_writer(schema)
    assert writer is not None
    record = {"a": x, "b": -x, "c": x if math.isnan(x) or abs(x) < 1e38 else 1.5}
    assert writer(record) == _fastavro(schema, record)


def test_well_typed_records_never_reach_fastavro(
    mobility: Contract, monkeypatch: pytest.MonkeyPatch
) -> None:
    entry = Schemas.from_contracts([mobility]).for_stream(mobility, "vehicle_events")
    writer = compile_writer(entry.parsed)
    assert writer is not None
    record = {
        "event_id": "e",
        "vehicle_id": "v",
        "provider_id": "p",
        "vehicle_type": "bike",
        "propulsion": "human",
        "event_type": "available",
        "timestamp": 1_780_000_000_000,
        "lat": 45.75,
        "lon": 4.83,
        "battery_pct": None,
        "trip_id": "t",
    }
    expected = _fastavro(entry.parsed, record)

    class NoFastavro:
        @staticmethod
        def schemaless_writer(*args: Any, **kwargs: Any) -> None:
            raise AssertionError("the compiled path should have written this record")

    monkeypatch.setattr("broker.kafka.avro_fast.fastavro", NoFastavro)
    assert writer(record) == expected
