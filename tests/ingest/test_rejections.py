"""``respublica rejections`` on the real broker: rejections pushed through the gateway are
found by request id, time range and reason, in the one contract's DLQ only, without payload."""

from __future__ import annotations

import json
import os
import tracemalloc
from collections.abc import Callable, Iterator
from types import SimpleNamespace
from typing import Any

import pytest
from kafka import KafkaAdminClient, KafkaProducer

from broker.cli import main
from broker.ingest.rejections import (
    RejectionQuery,
    find_rejections,
    rejection_of,
    render_text,
)
from broker.kafka import topics
from broker.kafka.reasons import Reason
from broker.kafka.settings import as_settings
from broker.kafka.writer import KafkaBatchWriter, ProducerSettings
from connectors.base import Rejected
from connectors.simulate import MobilitySimulator, SimOptions, take
from connectors.validate import dlq_record
from contracts import Contract
from tests.ingest.conftest import NOW_MS, ClientFactory
from tests.ingest.test_gateway_kafka import grant

pytestmark = pytest.mark.integration
SENTINEL = "SENTINEL-51c0"
HOUR_MS = 3_600_000


@pytest.fixture
def two_contracts(
    kafka_admin: KafkaAdminClient, kafka_bootstrap: str, contract_copy: Callable[..., Contract]
) -> Iterator[tuple[Contract, Contract]]:
    """A micromobility copy and a second one whose id extends the first (``<id>x``)."""
    first = contract_copy()
    second = contract_copy(id=f"{first.id}x")
    with topics.TopicAdmin(kafka_bootstrap) as admin:
        topics.apply(admin, topics.plan(admin, [first, second]))
    yield first, second
    kafka_admin.delete_topics([s.name for c in (first, second) for s in topics.contract_topics(c)])


def _events(start_ms: int) -> list[dict[str, Any]]:
    sim = MobilitySimulator(SimOptions(seed=3, start_ms=start_ms, size=50))
    return [item.record for item in take(sim.records(), 4, ["vehicle_events"])]


def _bad_batch(start_ms: int) -> tuple[list[dict[str, Any]], int]:
    """Two good events and three bad ones (indexes 1, 2, 4); the clock just after them."""
    good, one, two, three = _events(start_ms)
    missing = {k: v for k, v in one.items() if k != "vehicle_id"} | {"event_id": SENTINEL}
    outside = two | {"lat": 48.85, "lon": 2.35, "vehicle_id": f"{SENTINEL}-v"}
    unknown = three | {"colour": SENTINEL}
    batch = [good, missing, outside, good | {"event_id": "other-evt"}, unknown]
    return batch, max(e["timestamp"] for e in batch) + 1000


async def _post(client: Any, contract: Contract, batch: list[dict[str, Any]]) -> str:
    response = await client.post(
        f"/v1/contracts/{contract.id}/streams/vehicle_events/events",
        json=batch,
        headers={"Authorization": "Bearer tok-good"},
    )
    body = await response.json()
    assert response.status == 200, body
    return str(body["request_id"])


def _lookup(capsys: pytest.CaptureFixture[str], *args: str) -> str:
    assert main(["rejections", *args]) == 0
    return capsys.readouterr().out


async def test_rejections_are_found_by_request_id_time_and_reason(
    two_contracts: tuple[Contract, Contract],
    kafka_bootstrap: str,
    gateway_client: ClientFactory,
    capsys: pytest.CaptureFixture[str],
) -> None:
    first, second = two_contracts
    clock = [NOW_MS]
    writer = KafkaBatchWriter(ProducerSettings(kafka_bootstrap))
    client = await gateway_client(
        [first, second], writer, grants=grant(first, second), clock=lambda: clock[0]
    )
    early, clock[0] = _bad_batch(NOW_MS - 60_000)
    early_id = await _post(client, first, early)
    late, clock[0] = _bad_batch(NOW_MS + HOUR_MS)
    late_id = await _post(client, first, late)
    other_id = await _post(client, second, late)
    await writer.close()

    out = _lookup(capsys, "--contract", first.id, "--request-id", early_id)
    rows = [line.split() for line in out.splitlines()[1:-1]]
    assert [(r[1], r[2], r[3], r[5]) for r in rows] == [
        ("vehicle_events", "MISSING_FIELD", "vehicle_id", f"{early_id}#1"),
        ("vehicle_events", "OUTSIDE_TERRITORY", "lat,lon", f"{early_id}#2"),
        ("vehicle_events", "UNKNOWN_FIELD", "colour", f"{early_id}#4"),
    ]
    assert out.splitlines()[-1] == (
        f"3 rejection(s) in {first.topic_dlq('trips')}, {first.topic_dlq('vehicle_events')}:"
        " MISSING_FIELD 1, OUTSIDE_TERRITORY 1, UNKNOWN_FIELD 1"
    )
    assert SENTINEL not in out

    # One contract's DLQ only, even when another contract's id starts with this one's.
    everything = _lookup(capsys, "--contract", first.id, "--format", "json")
    found = [json.loads(line) for line in everything.splitlines()]
    assert {f["request_id"] for f in found} == {early_id, late_id}
    assert other_id not in everything and SENTINEL not in everything
    assert {f["topic"] for f in found} == {first.topic_dlq("vehicle_events")}
    assert all(f["original_bytes"] > 0 and len(f["original_sha256"]) == 64 for f in found)

    # By time range (on the rejection time) and reason.
    since = str(NOW_MS + HOUR_MS // 2)
    by_time = _lookup(
        capsys, "--contract", first.id, "--stream", "vehicle_events", "--since", since
    )
    assert late_id in by_time and early_id not in by_time
    by_reason = _lookup(capsys, "--contract", first.id, "--reason", "UNKNOWN_FIELD")
    assert by_reason.count("UNKNOWN_FIELD  colour") == 2
    assert "MISSING_FIELD" not in by_reason.splitlines()[-1]
    nothing = _lookup(capsys, "--contract", first.id, "--request-id", other_id)
    assert nothing.strip() == (
        f"no matching rejection in {first.topic_dlq('trips')}, {first.topic_dlq('vehicle_events')}"
    )


def test_a_large_dlq_is_filtered_a_chunk_at_a_time_without_holding_its_values(
    two_contracts: tuple[Contract, Contract],
    kafka_bootstrap: str,
    producer_factory: Callable[..., KafkaProducer],
) -> None:
    # Before: every DLQ record, its value (up to 64 KiB) included, was held at once, so the
    # peak grew with the DLQ (here ~36 MiB) whatever the filter matched.
    contract, _ = two_contracts
    producer = producer_factory()
    for i in range(600):
        reason = Reason.TOO_LATE if i % 100 == 7 else Reason.MISSING_FIELD
        _, value, headers = dlq_record(
            os.urandom(60_000),
            Rejected.of(reason, "timestamp"),
            contract=contract,
            stream="vehicle_events",
            connector="test",
            source=f"req-{i}#0",
            now_ms=NOW_MS + i,
        )
        producer.send(contract.topic_dlq("vehicle_events"), value=value, headers=headers)
    producer.flush(timeout=60)
    query = RejectionQuery(contract.id, "vehicle_events", reasons=frozenset({"TOO_LATE"}))
    tracemalloc.start()
    try:
        _, found = find_rejections(as_settings(kafka_bootstrap), query)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert [r.source for r in found] == [f"req-{i}#0" for i in range(7, 600, 100)]
    print(f"\n600 DLQ records of 60 kB read with a peak of {peak / 2**20:.1f} MiB")
    assert peak < 16 * 2**20


def test_a_dlq_of_many_small_records_is_read_in_one_pass(
    two_contracts: tuple[Contract, Contract],
    kafka_bootstrap: str,
    producer_factory: Callable[..., KafkaProducer],
) -> None:
    # Before: every 100 records were a new seek and fetch (~0.3-0.7 s each) under one total
    # deadline, so a DLQ of some 20,000+ records could not be searched at all: a provider
    # sending bad events on purpose made every lookup time out. The deadline is now on
    # progress: reading stops only when nothing arrives for ``timeout_s``.
    contract, _ = two_contracts
    producer = producer_factory(linger_ms=20, batch_size=1 << 20)
    for i in range(30_000):
        _, value, headers = dlq_record(
            b"x" * 100,
            Rejected.of(Reason.MISSING_FIELD, "vehicle_id"),
            contract=contract,
            stream="vehicle_events",
            connector="test",
            source=f"req-{i}#0",
            now_ms=NOW_MS + i,
        )
        producer.send(contract.topic_dlq("vehicle_events"), value=value, headers=headers)
    producer.flush(timeout=60)
    query = RejectionQuery(contract.id, "vehicle_events", request_id="req-29999")
    _, found = find_rejections(as_settings(kafka_bootstrap), query, timeout_s=20)
    assert [r.source for r in found] == ["req-29999#0"]


def test_an_unknown_contract_is_a_clear_error(
    kafka_bootstrap: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["rejections", "--contract", "no-such-contract"]) == 1
    err = capsys.readouterr().err
    assert "no DLQ topic dlq.no-such-contract.<stream> visible" in err


@pytest.mark.unit
def test_a_row_shows_the_detail_and_never_an_unprintable_header() -> None:
    headers = [
        ("respublica.reason", b"TOO_LATE"),
        ("respublica.field", b"timestamp\x1b[2J"),  # a terminal escape: not echoed
        ("respublica.stage", b"semantic\n"),  # a line break breaks the table: not echoed
        ("respublica.source", b"rid-1#0"),
        ("respublica.connector", b"http-push"),
        ("respublica.rejected_at", str(NOW_MS).encode()),
        ("respublica.stream", b"vehicle_events"),
        ("respublica.original_bytes", b"12"),
        ("respublica.detail", b"the time looks like seconds: send milliseconds"),
    ]
    record = SimpleNamespace(topic="dlq.c.vehicle_events", partition=0, offset=3, headers=headers)
    rejection = rejection_of(record)  # type: ignore[arg-type]
    assert (rejection.field, rejection.stage, rejection.request_id) == ("?", "?", "rid-1")
    text = render_text(["dlq.c.vehicle_events"], [rejection], 10)
    assert text.splitlines()[1].endswith("12     the time looks like seconds: send milliseconds")
    assert "\x1b" not in text
