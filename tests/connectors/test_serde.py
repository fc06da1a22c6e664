"""Confluent-framed Avro: deterministic ids, round trips, and every decode failure -> a reason."""

from __future__ import annotations

import struct
from pathlib import Path
from typing import Any

import pytest

from broker.kafka.reasons import Reason
from broker.kafka.serde import (
    Schemas,
    SerializationError,
    decode,
    encode,
    schema_id,
    subject_name,
)
from contracts import Contract
from tests.connectors.conftest import vehicle_event

pytestmark = pytest.mark.unit
SENTINEL = "SENTINEL-Zq9"


def _framed(schemas: Schemas, mobility: Contract, record: dict[str, Any]) -> bytes:
    entry = schemas.for_stream(mobility, "vehicle_events")
    return encode(entry.parsed, entry.schema_id, record)


def test_schema_id_is_deterministic_31_bit_and_ignores_docs(mobility: Contract) -> None:
    stream = mobility.stream("vehicle_events")
    sid = schema_id(stream.raw_schema)
    assert sid == schema_id(stream.avro_schema)  # parsed or raw: same canonical form
    assert 0 <= sid < 2**31
    undocumented = {k: v for k, v in stream.raw_schema.items() if k != "doc"}
    assert schema_id(undocumented) == sid  # docs are not part of the canonical form
    assert schema_id(mobility.stream("trips").raw_schema) != sid


def test_schemas_from_contracts_registers_subjects(
    schemas: Schemas, examples: dict[str, Contract]
) -> None:
    for contract in examples.values():
        for stream in contract.streams:
            entry = schemas.by_subject(subject_name(contract, stream))
            assert entry is not None
            assert entry.schema_id == schema_id(stream.raw_schema)
            assert schemas.get(entry.schema_id) is entry
    assert subject_name("c", "s") == "raw.c.s-value"
    assert len(schemas) == sum(len(c.streams) for c in examples.values())


def test_round_trip(schemas: Schemas, mobility: Contract) -> None:
    record = vehicle_event(7, battery_pct=None, trip_id="trip-1")
    data = _framed(schemas, mobility, record)
    assert data[0] == 0
    sid, decoded = decode(data, schemas)
    assert sid == schema_id(mobility.stream("vehicle_events").raw_schema)
    assert decoded == record


def _bad_union(data: bytes) -> bytes:
    # battery_pct (["null","int"]) is the second-to-last field: its union index is the byte
    # just before the int 80 (zigzag 0xa0 0x01) and the trailing null trip_id (0x00).
    assert data.endswith(b"\x02\xa0\x01\x00")
    return data[:-4] + b"\x0a\xa0\x01\x00"


@pytest.mark.parametrize(
    ("mutate", "reason", "path"),
    [
        (lambda d: b"", Reason.AVRO_TRUNCATED, ""),
        (lambda d: d[:4], Reason.AVRO_TRUNCATED, ""),
        (lambda d: b"\x01" + d[1:], Reason.AVRO_BAD_MAGIC, ""),
        (lambda d: d[:1] + struct.pack(">I", 12345) + d[5:], Reason.AVRO_UNKNOWN_SCHEMA, ""),
        (lambda d: d[:-3], Reason.AVRO_TRUNCATED, "battery_pct"),
        (lambda d: d[:8], Reason.AVRO_TRUNCATED, "event_id"),
        (lambda d: d + b"\x00\x00", Reason.AVRO_TRAILING_BYTES, ""),
        (_bad_union, Reason.AVRO_INVALID, "battery_pct"),
    ],
)
def test_decode_failures_map_to_reasons(
    schemas: Schemas, mobility: Contract, mutate: Any, reason: Reason, path: str
) -> None:
    data = _framed(schemas, mobility, vehicle_event(1))
    with pytest.raises(SerializationError) as caught:
        decode(mutate(data), schemas)
    assert caught.value.reason is reason
    assert caught.value.field_path == path


def test_invalid_utf8_names_the_field_and_not_the_bytes(
    schemas: Schemas, mobility: Contract
) -> None:
    data = _framed(schemas, mobility, vehicle_event(1, vehicle_id=SENTINEL + "X"))
    broken = data.replace(b"X", b"\xff")  # same length: only the encoding is wrong
    with pytest.raises(SerializationError) as caught:
        decode(broken, schemas)
    assert caught.value.reason is Reason.INVALID_UTF8
    assert caught.value.field_path == "vehicle_id"
    assert SENTINEL not in str(caught.value)
    assert "\\xff" not in str(caught.value)


def test_encode_translates_writer_errors_without_values(
    schemas: Schemas, mobility: Contract
) -> None:
    entry = schemas.for_stream(mobility, "vehicle_events")
    with pytest.raises(SerializationError) as caught:
        encode(entry.parsed, entry.schema_id, vehicle_event(1, lat=SENTINEL))
    assert caught.value.reason is Reason.AVRO_INVALID
    assert SENTINEL not in str(caught.value)


def test_the_schema_id_recipe_in_docs_reasons_md_gives_the_id(mobility: Contract) -> None:
    # docs/reasons.md tells platforms how to compute a stream's schema id themselves; run it.
    text = (Path(__file__).parents[2] / "docs" / "reasons.md").read_text(encoding="utf-8")
    recipe = text.split("```python\n", 1)[1].split("```", 1)[0]
    schema_file = Path(__file__).parents[2] / "contracts" / "schemas" / "mds_vehicle_event.avsc"
    namespace: dict[str, object] = {}
    exec(recipe.replace("mds_vehicle_event.avsc", str(schema_file)), namespace)  # noqa: S102
    assert namespace["schema_id"] == schema_id(mobility.stream("vehicle_events").raw_schema)
