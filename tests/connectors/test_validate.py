"""The validation path: a table of bad payloads -> reason + field path, and no value leaks."""

from __future__ import annotations

import hashlib
import json
import logging
import struct
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest

from broker.kafka.reasons import Reason, Stage
from broker.kafka.serde import Schemas, decode, encode
from connectors.base import Accepted, Rejected
from connectors.conform import FieldProblem, record_conformer
from connectors.dedup import DuplicateFilter
from connectors.validate import DLQ_MAX_VALUE_BYTES, Router, StreamValidator, dlq_record
from contracts import Contract
from tests.connectors.conftest import NOW_MS, ContractCopy, vehicle_event

pytestmark = pytest.mark.unit
MINUTE = 60_000
SENTINEL = "SENTINEL-Qx7"
MICROSECONDS_HINT = "the time looks like microseconds: send milliseconds"
SENTINEL_LAT = 45.7123987  # its digits must not show up anywhere either


def _json(record: Any) -> bytes:
    return json.dumps(record).encode()


def _without(field: str) -> dict[str, Any]:
    record = vehicle_event(1)
    del record[field]
    return record


def _validate(validator: StreamValidator, payload: bytes | dict[str, Any]) -> Any:
    return validator.validate_json(payload, now_ms=NOW_MS, connector="test", source="unit")


JSON_CASES: list[tuple[str, Callable[[], bytes], Reason, str]] = [
    ("oversize", lambda: b'{"x": "' + b"a" * 70_000 + b'"}', Reason.PAYLOAD_TOO_LARGE, ""),
    ("empty", lambda: b"", Reason.MALFORMED_JSON, ""),
    ("cut", lambda: _json(vehicle_event(1))[:-5], Reason.MALFORMED_JSON, ""),
    ("trailing data", lambda: _json(vehicle_event(1)) + b" {}", Reason.MALFORMED_JSON, ""),
    (
        "NaN",
        lambda: _json(vehicle_event(1)).replace(b'"battery_pct": 80', b'"battery_pct": NaN'),
        Reason.MALFORMED_JSON,
        "",
    ),
    (
        "bad utf-8",
        lambda: _json(vehicle_event(1)).replace(b"electric", b"electr\xffc"),
        Reason.INVALID_UTF8,
        "",
    ),
    (
        "lone surrogate",
        lambda: _json(vehicle_event(1)).replace(b"electric", b"\\ud800"),
        Reason.INVALID_UTF8,
        "propulsion",
    ),
    ("array", lambda: _json([vehicle_event(1)]), Reason.NOT_AN_OBJECT, ""),
    ("string", lambda: b'"hello"', Reason.NOT_AN_OBJECT, ""),
    ("missing", lambda: _json(_without("timestamp")), Reason.MISSING_FIELD, "timestamp"),
    (
        "string time",
        lambda: _json(vehicle_event(1, timestamp=str(NOW_MS))),
        Reason.WRONG_TYPE,
        "timestamp",
    ),
    (
        "float time",
        lambda: _json(vehicle_event(1, timestamp=NOW_MS + 0.5)),
        Reason.WRONG_TYPE,
        "timestamp",
    ),
    (
        "bool int",
        lambda: _json(vehicle_event(1, battery_pct=True)),
        Reason.WRONG_TYPE,
        "battery_pct",
    ),
    (
        "int too big",
        lambda: _json(vehicle_event(1, battery_pct=2**31)),
        Reason.OUT_OF_RANGE,
        "battery_pct",
    ),
    (
        "long too big",
        lambda: _json(vehicle_event(1, timestamp=2**63)),
        Reason.OUT_OF_RANGE,
        "timestamp",
    ),
    (
        "1e400",
        lambda: (
            _json(vehicle_event(1))
            .replace(b'"battery_pct": 80', b'"lat": 1e400')
            .replace(b'"lat": 45.7578', b'"battery_pct": 80')
        ),
        Reason.OUT_OF_RANGE,
        "lat",
    ),
    ("null", lambda: _json(vehicle_event(1, vehicle_id=None)), Reason.WRONG_TYPE, "vehicle_id"),
    ("number string", lambda: _json(vehicle_event(1, lat="45.75")), Reason.WRONG_TYPE, "lat"),
    ("unknown", lambda: _json(vehicle_event(1, colour="red")), Reason.UNKNOWN_FIELD, "colour"),
    (
        "unknown odd",
        lambda: _json({**vehicle_event(1), SENTINEL + " !": 1}),
        Reason.UNKNOWN_FIELD,
        "?",
    ),
    ("lat range", lambda: _json(vehicle_event(1, lat=91.0)), Reason.OUT_OF_RANGE, "lat"),
    ("lon range", lambda: _json(vehicle_event(1, lon=-181.0)), Reason.OUT_OF_RANGE, "lon"),
    (
        "outside",
        lambda: _json(vehicle_event(1, lat=48.85, lon=2.35)),
        Reason.OUTSIDE_TERRITORY,
        "lat,lon",
    ),
    (
        "future",
        lambda: _json(vehicle_event(1, timestamp=NOW_MS + 6 * MINUTE)),
        Reason.EVENT_IN_FUTURE,
        "timestamp",
    ),
    (
        "too late",
        lambda: _json(vehicle_event(1, timestamp=NOW_MS - 6 * MINUTE)),
        Reason.TOO_LATE,
        "timestamp",
    ),
]


@pytest.mark.parametrize(
    ("payload", "reason", "path"), [pytest.param(p, r, f, id=i) for i, p, r, f in JSON_CASES]
)
def test_bad_json_is_rejected_with_reason_and_path(
    vehicle_validator: StreamValidator, payload: Callable[[], bytes], reason: Reason, path: str
) -> None:
    outcome = _validate(vehicle_validator, payload())
    assert isinstance(outcome, Rejected)
    assert (outcome.reason, outcome.field_path) == (reason, path)


def test_good_json_is_accepted_with_key_headers_and_avro_value(
    vehicle_validator: StreamValidator, schemas: Schemas, mobility: Contract
) -> None:
    record = _without("trip_id")  # a field with a default may be left out
    outcome = _validate(vehicle_validator, _json(record))
    assert isinstance(outcome, Accepted)
    assert outcome.key == record["vehicle_id"].encode()
    assert outcome.event_time_ms == record["timestamp"]
    assert dict(outcome.headers) == {
        "respublica.contract": mobility.id.encode(),
        "respublica.contract_version": str(mobility.version).encode(),
        "respublica.stream": b"vehicle_events",
        "respublica.connector": b"test",
        "respublica.received_at": str(NOW_MS).encode(),
    }
    sid, decoded = decode(outcome.value, schemas)
    assert sid == vehicle_validator.schema.schema_id
    assert decoded == {**record, "trip_id": None}


def test_parsed_mapping_from_the_gateway_is_accepted(vehicle_validator: StreamValidator) -> None:
    assert isinstance(_validate(vehicle_validator, vehicle_event(2)), Accepted)
    assert _validate(vehicle_validator, [1, 2]) == Rejected(  # type: ignore[arg-type]
        Reason.NOT_AN_OBJECT, "", Stage.DECODE
    )


def test_duplicate_event_id_is_rejected_once_accepted(vehicle_validator: StreamValidator) -> None:
    assert isinstance(_validate(vehicle_validator, _json(vehicle_event(3))), Accepted)
    again = _validate(vehicle_validator, _json(vehicle_event(3, vehicle_id="other")))
    assert again == Rejected(Reason.DUPLICATE_EVENT, "event_id", Stage.SEMANTIC)
    # A rejected event is not remembered: its corrected retry goes through.
    late = vehicle_event(4, timestamp=NOW_MS - 10 * MINUTE)
    assert _validate(vehicle_validator, _json(late)).reason is Reason.TOO_LATE
    assert isinstance(_validate(vehicle_validator, _json(vehicle_event(4))), Accepted)


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("vehicle_id", "\u200b \u00a0"),  # nothing left once canonical
        ("vehicle_id", "ab\x07c"),  # a control character
        ("vehicle_id", ""),
        ("event_id", "\ufeff\u200d"),
        ("event_id", "evt\x00-1"),
    ],
)
def test_an_unusable_identifier_is_rejected_by_field_not_value(
    vehicle_validator: StreamValidator, field: str, value: str
) -> None:
    record = vehicle_event(5, **{field: value})
    expected = Rejected(Reason.INVALID_IDENTIFIER, field, Stage.SEMANTIC)
    assert _validate(vehicle_validator, _json(record)) == expected
    framed = _framed(vehicle_validator, record)  # Avro skips the JSON conformer, not this
    outcome = vehicle_validator.validate(framed, now_ms=NOW_MS, connector="t", source="s")
    assert outcome == expected
    assert Reason.INVALID_IDENTIFIER.stage is Stage.SEMANTIC


def test_spellings_of_one_subject_share_the_raw_key_and_keep_their_value(
    vehicle_validator: StreamValidator, schemas: Schemas
) -> None:
    keys = []
    for i, subject in enumerate([" ABC\u200b", "abc", "\uff41\uff22\uff43"]):
        outcome = _validate(vehicle_validator, _json(vehicle_event(i, vehicle_id=subject)))
        assert isinstance(outcome, Accepted)
        assert decode(outcome.value, schemas)[1]["vehicle_id"] == subject  # value as sent
        keys.append(outcome.key)
    assert keys == [b"abc"] * 3


def test_spellings_of_one_event_id_are_duplicates(vehicle_validator: StreamValidator) -> None:
    assert isinstance(_validate(vehicle_validator, vehicle_event(6, event_id="EVT-6")), Accepted)
    again = _validate(vehicle_validator, vehicle_event(7, event_id=" evt-6\u200b"))
    assert again == Rejected(Reason.DUPLICATE_EVENT, "event_id", Stage.SEMANTIC)


def _framed(validator: StreamValidator, record: dict[str, Any]) -> bytes:
    return encode(validator.schema.parsed, validator.schema.schema_id, record)


AVRO_CASES: list[tuple[str, Callable[[bytes], bytes], Reason, str]] = [
    ("oversize", lambda d: d + b"\x00" * 70_000, Reason.PAYLOAD_TOO_LARGE, ""),
    ("short", lambda d: d[:3], Reason.AVRO_TRUNCATED, ""),
    ("truncated", lambda d: d[:-2], Reason.AVRO_TRUNCATED, "battery_pct"),
    ("trailing", lambda d: d + b"\x00", Reason.AVRO_TRAILING_BYTES, ""),
    ("magic", lambda d: b"\x01" + d[1:], Reason.AVRO_BAD_MAGIC, ""),
    (
        "unknown id",
        lambda d: b"\x00" + struct.pack(">I", 7) + d[5:],
        Reason.AVRO_UNKNOWN_SCHEMA,
        "",
    ),
    ("bad union", lambda d: d[:-4] + b"\x0a" + d[-3:], Reason.AVRO_INVALID, "battery_pct"),
    (
        "bad utf-8",
        lambda d: d.replace(b"electric", b"electr\xffc"),
        Reason.INVALID_UTF8,
        "propulsion",
    ),
]


@pytest.mark.parametrize(
    ("mutate", "reason", "path"), [pytest.param(m, r, f, id=i) for i, m, r, f in AVRO_CASES]
)
def test_bad_avro_is_rejected_with_reason_and_path(
    vehicle_validator: StreamValidator, mutate: Callable[[bytes], bytes], reason: Reason, path: str
) -> None:
    good = _framed(vehicle_validator, vehicle_event(1))
    payload = mutate(good)
    outcome = vehicle_validator.validate(payload, now_ms=NOW_MS, connector="t", source="s")
    assert isinstance(outcome, Rejected)
    assert (outcome.reason, outcome.field_path) == (reason, path)


def test_avro_of_another_stream_is_a_schema_mismatch(
    vehicle_validator: StreamValidator, schemas: Schemas, mobility: Contract
) -> None:
    trips = schemas.for_stream(mobility, "trips")
    payload = b"\x00" + struct.pack(">I", trips.schema_id) + b"\x00"
    outcome = vehicle_validator.validate_avro(payload, now_ms=NOW_MS, connector="t", source="s")
    assert outcome == Rejected(Reason.SCHEMA_MISMATCH, "", Stage.SCHEMA)


def test_good_avro_passes_through_and_semantics_apply(vehicle_validator: StreamValidator) -> None:
    good = _framed(vehicle_validator, vehicle_event(1))
    outcome = vehicle_validator.validate(good, now_ms=NOW_MS, connector="t", source="s")
    assert isinstance(outcome, Accepted) and outcome.value == good
    outside = _framed(vehicle_validator, vehicle_event(2, lat=48.85, lon=2.35))
    rejected = vehicle_validator.validate(outside, now_ms=NOW_MS, connector="t", source="s")
    assert isinstance(rejected, Rejected) and rejected.reason is Reason.OUTSIDE_TERRITORY


def test_polygon_territory_uses_the_polygon_not_its_box(
    examples: dict[str, Contract], schemas: Schemas
) -> None:
    nav = examples["bordeaux-navigation"]
    validator = StreamValidator(nav, "jams", schemas=schemas)

    def jam(i: int, lat: float, lon: float) -> dict[str, Any]:
        return {
            "event_id": f"j{i}",
            "reporter_id": "u1",
            "timestamp": NOW_MS - 1000,
            "lat": lat,
            "lon": lon,
            "road_type": 1,
            "length_m": 120.0,
            "delay_s": 60.0,
            "speed_kmh": 12.5,
            "level": 3,
        }

    inside = _validate(validator, jam(1, 44.85, -0.60))
    corner = _validate(validator, jam(2, 44.94, -0.44))  # in the box, outside the outline
    assert isinstance(inside, Accepted)
    assert isinstance(corner, Rejected) and corner.reason is Reason.OUTSIDE_TERRITORY


def test_router_rejects_unknown_contracts_and_streams_and_inactive_periods(
    examples: dict[str, Contract], contract_copy: ContractCopy
) -> None:
    later = contract_copy(validity={"start": "2026-07-01T00:00:00Z", "end": "2030-01-01T00:00:00Z"})
    router = Router([*examples.values(), later])
    payload = _json(vehicle_event(1))
    kwargs: dict[str, Any] = {"now_ms": NOW_MS, "connector": "http", "source": "req-1"}
    assert router.validate("nope", "vehicle_events", payload, **kwargs) == Rejected(
        Reason.UNKNOWN_CONTRACT, "", Stage.ROUTE
    )
    assert router.validate_json("lyon-micromobility", "nope", payload, **kwargs) == Rejected(
        Reason.UNKNOWN_STREAM, "", Stage.ROUTE
    )
    inactive = router.validate_json(later.id, "vehicle_events", payload, **kwargs)
    assert inactive == Rejected(Reason.CONTRACT_INACTIVE, "timestamp", Stage.SEMANTIC)
    ok = router.validate_json("lyon-micromobility", "vehicle_events", payload, **kwargs)
    assert isinstance(ok, Accepted)


def test_dlq_record_keeps_the_payload_and_says_why(mobility: Contract) -> None:
    rejected = Rejected(Reason.MISSING_FIELD, "timestamp", Stage.SCHEMA)
    key, value, headers = dlq_record(
        b"payload",
        rejected,
        contract=mobility,
        stream="vehicle_events",
        connector="kafka",
        source="ingest.x.y/2/40",
        now_ms=NOW_MS,
    )
    assert key is None and value == b"payload"
    assert dict(headers) == {
        "respublica.reason": b"MISSING_FIELD",
        "respublica.field": b"timestamp",
        "respublica.stage": b"schema",
        "respublica.source": b"ingest.x.y/2/40",
        "respublica.connector": b"kafka",
        "respublica.rejected_at": str(NOW_MS).encode(),
        "respublica.contract": mobility.id.encode(),
        "respublica.contract_version": str(mobility.version).encode(),
        "respublica.stream": b"vehicle_events",
        "respublica.original_bytes": b"7",
        "respublica.original_sha256": hashlib.sha256(b"payload").hexdigest().encode(),
    }


def test_dlq_record_keeps_a_bounded_prefix_of_an_oversized_payload(mobility: Contract) -> None:
    rejected = Rejected(Reason.PAYLOAD_TOO_LARGE, "", Stage.DECODE)
    for size in (DLQ_MAX_VALUE_BYTES - 1, DLQ_MAX_VALUE_BYTES, DLQ_MAX_VALUE_BYTES + 1, 4 << 20):
        payload = bytes(range(256)) * (size // 256) + b"x" * (size % 256)
        _, value, headers = dlq_record(
            payload,
            rejected,
            contract=mobility,
            stream="vehicle_events",
            connector="gateway",
            source="request-1",
            now_ms=NOW_MS,
        )
        assert value == payload[:DLQ_MAX_VALUE_BYTES]
        assert dict(headers)["respublica.original_bytes"] == str(size).encode()
        assert (
            dict(headers)["respublica.original_sha256"]
            == hashlib.sha256(payload).hexdigest().encode()
        )


def _sentinel_payloads(validator: StreamValidator) -> list[bytes]:
    """Bad payloads of every kind, each carrying the sentinels in its values."""
    base = vehicle_event(
        9,
        event_id=SENTINEL + "-e",
        vehicle_id=SENTINEL + "-v",
        provider_id=SENTINEL,
        lat=SENTINEL_LAT,
    )
    payloads = [case() for _, case, _, _ in JSON_CASES]
    payloads = [p.replace(b"evt-00000001", SENTINEL.encode()) for p in payloads]
    variants = [
        {**base, "vehicle_type": 7},
        {**base, "lat": SENTINEL},
        {**base, "lat": 91.0},
        {**base, "timestamp": NOW_MS + 9 * MINUTE},
        {**base, SENTINEL: SENTINEL},
        {k: v for k, v in base.items() if k != "lon"},
        {**base, "lon": 2.35},
        {**base, "vehicle_id": SENTINEL + "\x07"},
        {**base, "event_id": SENTINEL + "\x00"},
    ]
    payloads += [_json(v) for v in variants]
    payloads += [_json(base).replace(SENTINEL.encode(), SENTINEL.encode() + b"\xff")]
    good = _framed(validator, base)
    payloads += [m(good) for _, m, _, _ in AVRO_CASES]
    payloads += [_json(base), _json(base)]  # the second one is a duplicate
    return payloads


def test_no_value_reaches_a_rejection_header_or_log(
    vehicle_validator: StreamValidator, mobility: Contract, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    outcomes = [
        vehicle_validator.validate(p, now_ms=NOW_MS, connector="t", source="s")
        for p in _sentinel_payloads(vehicle_validator)
    ]
    rejected = [o for o in outcomes if isinstance(o, Rejected)]
    assert len(rejected) >= 40 and {r.reason for r in rejected} >= {
        Reason.DUPLICATE_EVENT,
        Reason.WRONG_TYPE,
        Reason.INVALID_UTF8,
        Reason.UNKNOWN_FIELD,
        Reason.INVALID_IDENTIFIER,
    }
    texts = [repr(r) + r.describe() for r in rejected]
    for r in rejected:
        key, _, headers = dlq_record(
            b"x",
            r,
            contract=mobility,
            stream="vehicle_events",
            connector="t",
            source="s",
            now_ms=NOW_MS,
        )
        texts += [repr(key)] + [repr(v) + k for k, v in headers]
    texts += [rec.getMessage() for rec in caplog.records]
    blob = "\n".join(texts)
    assert SENTINEL not in blob and "7123987" not in blob and "Qx7" not in blob


def test_conformer_converts_json_ints_for_doubles_and_checks_nested_types() -> None:
    schema = {
        "type": "record",
        "name": "R",
        "fields": [
            {"name": "x", "type": "double"},
            {"name": "f", "type": "float"},
            {"name": "tags", "type": {"type": "array", "items": "string"}},
            {"name": "kind", "type": {"type": "enum", "name": "K", "symbols": ["a", "b"]}},
            {
                "name": "inner",
                "type": {"type": "record", "name": "I", "fields": [{"name": "n", "type": "long"}]},
            },
        ],
    }
    conform = record_conformer(schema)
    ok = conform({"x": 3, "f": 1.5, "tags": ["t"], "kind": "a", "inner": {"n": 1}})
    assert ok["x"] == 3.0 and type(ok["x"]) is float
    for bad, reason, path in [
        ({"tags": ["t", 1]}, Reason.WRONG_TYPE, "tags[]"),
        ({"kind": "c"}, Reason.OUT_OF_RANGE, "kind"),
        ({"inner": {"n": "1"}}, Reason.WRONG_TYPE, "inner.n"),
        ({"inner": {"n": 1, "m": 2}}, Reason.UNKNOWN_FIELD, "inner.m"),
        ({"f": 1e39}, Reason.OUT_OF_RANGE, "f"),
        ({"x": 10**400}, Reason.OUT_OF_RANGE, "x"),
    ]:
        record = {"x": 3, "f": 1.5, "tags": ["t"], "kind": "a", "inner": {"n": 1}, **bad}
        with pytest.raises(FieldProblem) as caught:
            conform(record)
        assert (caught.value.reason, caught.value.path) == (reason, path)


def test_duplicate_filter_forgets_after_the_horizon_and_stays_bounded() -> None:
    dedup = DuplicateFilter(timedelta(minutes=5), max_entries=1000)
    assert not dedup.seen("a", event_time_ms=NOW_MS, now_ms=NOW_MS)
    assert dedup.seen("a", event_time_ms=NOW_MS, now_ms=NOW_MS + 4 * MINUTE)
    assert not dedup.seen("a", event_time_ms=NOW_MS, now_ms=NOW_MS + 6 * MINUTE)
    for i in range(100_000):  # 100k events over ~17 minutes
        dedup.seen(i, event_time_ms=NOW_MS + i * 10, now_ms=NOW_MS + i * 10)
    assert len(dedup) <= 1000
    assert dedup.forced_evictions > 0
    time_bound = DuplicateFilter(timedelta(minutes=5))
    for i in range(100_000):
        time_bound.seen(i, event_time_ms=NOW_MS + i * 10, now_ms=NOW_MS + i * 10)
    assert len(time_bound) <= 5 * MINUTE // 10 + 2_000  # one horizon plus a bucket or so
    assert time_bound.forced_evictions == 0


def test_duplicate_filter_forgets_ids_of_unwritten_events() -> None:
    dedup = DuplicateFilter(timedelta(minutes=5))
    assert not dedup.seen("a", event_time_ms=NOW_MS, now_ms=NOW_MS)
    assert not dedup.seen("b", event_time_ms=NOW_MS, now_ms=NOW_MS)
    dedup.forget(["a", "never-seen"])
    assert len(dedup) == 1
    assert not dedup.seen("a", event_time_ms=NOW_MS, now_ms=NOW_MS)
    assert dedup.seen("b", event_time_ms=NOW_MS, now_ms=NOW_MS)


def test_a_bug_on_one_payload_is_an_internal_rejection_logged_by_type_only(
    vehicle_validator: StreamValidator,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def broken(record: Any) -> Any:
        raise RuntimeError(SENTINEL)

    monkeypatch.setattr(vehicle_validator, "_conform", broken)
    with caplog.at_level(logging.ERROR, logger="connectors"):
        outcome = _validate(vehicle_validator, _json(vehicle_event(1)))
    assert outcome == Rejected(Reason.INTERNAL, "", Stage.INTERNAL)
    messages = " ".join(r.getMessage() for r in caplog.records)
    assert "RuntimeError" in messages and SENTINEL not in messages
    assert all(r.exc_info is None for r in caplog.records)  # no traceback with values


@pytest.mark.parametrize(
    ("timestamp", "reason", "detail"),
    [
        (NOW_MS // 1000, Reason.TOO_LATE, "the time looks like seconds: send milliseconds"),
        (NOW_MS * 1000, Reason.EVENT_IN_FUTURE, MICROSECONDS_HINT),
        (NOW_MS - 10 * MINUTE, Reason.TOO_LATE, ""),
        (NOW_MS + 10 * MINUTE, Reason.EVENT_IN_FUTURE, ""),
    ],
    ids=["seconds", "microseconds", "late", "future"],
)
def test_a_time_in_the_wrong_unit_says_so(
    vehicle_validator: StreamValidator,
    mobility: Contract,
    timestamp: int,
    reason: Reason,
    detail: str,
) -> None:
    rejected = _validate(vehicle_validator, _json(vehicle_event(7, timestamp=timestamp)))
    assert rejected == Rejected(reason, "timestamp", Stage.SEMANTIC, detail)
    assert rejected.describe().endswith(f": {detail}" if detail else "(semantic)")
    _, _, headers = dlq_record(
        b"x",
        rejected,
        contract=mobility,
        stream="vehicle_events",
        connector="t",
        source="s",
        now_ms=NOW_MS,
    )
    assert dict(headers).get("respublica.detail") == (detail.encode() if detail else None)
