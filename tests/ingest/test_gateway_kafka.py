"""The gateway on the real broker: 10,000 good and 1,000 bad events, then a leak scan.

Good events are simulated scooters; bad ones come from ``FaultInjector`` (15 per-record
kinds) plus whole-request faults (unknown contract and stream, a contract not yet in force,
wrong tokens, bodies too large or of the wrong type). Every good event must be on ``raw.``
exactly once, every bad one on the DLQ with its reason and field (or refused with the right
status), and no input value may show in DLQ headers, logs, HTTP bodies or ``/metrics``.
"""

from __future__ import annotations

import json
import logging
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from kafka import KafkaAdminClient, KafkaConsumer
from prometheus_client import CollectorRegistry

from broker.ingest.auth import ProviderGrant, hash_token
from broker.kafka import topics
from broker.kafka.serde import decode_body
from broker.kafka.writer import KafkaBatchWriter, ProducerSettings
from connectors.simulate import MobilitySimulator, SimOptions, take
from connectors.simulate.faults import JSON_KINDS, FaultInjector
from connectors.validate import H_FIELD, H_REASON, H_SOURCE
from contracts import Contract
from tests.ingest.conftest import NOW_MS, ClientFactory, scrape

pytestmark = pytest.mark.integration
GOOD, BAD_EVERY, BATCH = 10_000, 10, 500
SENTINEL = "SENTINEL-7f3a"


@dataclass
class Expected:
    """What the test sent, to check what came out."""

    good_ids: dict[str, Counter[str]] = field(default_factory=dict)  # stream -> event ids
    faults: dict[str, tuple[str, str]] = field(default_factory=dict)  # "rid#i" -> reason, field
    bodies: list[str] = field(default_factory=list)
    values: set[str] = field(default_factory=set)  # every string value sent


@pytest.fixture
def applied(
    kafka_admin: KafkaAdminClient, kafka_bootstrap: str, contract_copy: Callable[..., Contract]
) -> Iterator[tuple[Contract, Contract]]:
    """A live copy of the micromobility contract and one not yet in force, with topics."""
    live = contract_copy()
    future = contract_copy(
        validity={"start": "2027-01-01T00:00:00Z", "end": "2031-01-01T00:00:00Z"}
    )
    with topics.TopicAdmin(kafka_bootstrap) as admin:
        topics.apply(admin, topics.plan(admin, [live, future]))
    yield live, future
    names = [s.name for c in (live, future) for s in topics.contract_topics(c)]
    kafka_admin.delete_topics(names)


def grant(*contracts: Contract) -> list[ProviderGrant]:
    return [
        ProviderGrant(
            id="scootco",
            token_sha256=hash_token("tok-good"),
            contracts=tuple(c.id for c in contracts),
        ),
        ProviderGrant(id="other", token_sha256=hash_token("tok-other"), contracts=("paris-str",)),
    ]


def planted(record: dict[str, Any], n: int) -> dict[str, Any]:
    """A copy with sentinel identifiers, to scan for later."""
    return {**record, "vehicle_id": f"{SENTINEL}-veh-{n}", "event_id": f"{SENTINEL}-evt-{n}"}


def payloads(contract: Contract, expected: Expected) -> Iterator[tuple[str, bytes, Any]]:
    """``(stream, NDJSON line, fault or None)``: 10,000 good records, a fault after every 10th."""
    # 8,000 vehicles: a batch of 500 events spans about two minutes, inside the lateness.
    sim = MobilitySimulator(SimOptions(seed=11, start_ms=NOW_MS - 3_600_000, size=8000))
    injectors = {s: FaultInjector(contract, s, seed=5) for s in ("vehicle_events", "trips")}
    for n, (stream, record) in enumerate(take(sim.records(), GOOD)):
        expected.good_ids.setdefault(stream, Counter())[record["event_id"]] += 1
        expected.values.update(v for v in record.values() if isinstance(v, str) and len(v) > 8)
        yield stream, json.dumps(record).encode(), None
        if n % BAD_EVERY == BAD_EVERY - 1:
            kind = JSON_KINDS[(n // BAD_EVERY) % len(JSON_KINDS)]
            source = record if kind.value == "duplicate_event_id" else planted(record, n)
            fault = injectors[stream].make(kind, source)
            yield stream, fault.payload, fault


async def post_batches(client: Any, contract: Contract, expected: Expected) -> list[int]:
    """Post NDJSON batches of 500 per stream; the clock follows the data (a replay)."""
    batches: dict[str, list[tuple[bytes, Any]]] = {}
    statuses = []
    for stream, line, fault in payloads(contract, expected):
        batch = batches.setdefault(stream, [])
        batch.append((line, fault))
        if len(batch) == BATCH:
            statuses.append(await post(client, contract, stream, batch, expected))
            batches[stream] = []
    for stream, batch in batches.items():
        if batch:
            statuses.append(await post(client, contract, stream, batch, expected))
    return statuses


CLOCK = [NOW_MS]


async def post(
    client: Any, contract: Contract, stream: str, batch: list[tuple[bytes, Any]], expected: Expected
) -> int:
    time_field = contract.stream(stream).event_time
    times = [json.loads(line)[time_field] for line, fault in batch if fault is None]
    CLOCK[0] = max(times) + 1000
    response = await client.post(
        f"/v1/contracts/{contract.id}/streams/{stream}/events",
        data=b"\n".join(line for line, _ in batch),
        headers={"Authorization": "Bearer tok-good", "Content-Type": "application/x-ndjson"},
    )
    text = await response.text()
    expected.bodies.append(text)
    body = json.loads(text)
    bad = [(i, f) for i, (_, f) in enumerate(batch) if f is not None]
    assert [(r["index"], r["reason"], r["field"]) for r in body["rejected"]] == [
        (i, f.reason.value, f.field) for i, f in bad
    ]
    for i, f in bad:
        expected.faults[f"{body['request_id']}#{i}"] = (f.reason.value, f.field)
    return response.status


async def whole_request_faults(
    client: Any, live: Contract, future: Contract, expected: Expected
) -> None:
    """Faults refused as a whole (no record written) or rejected per item (inactive)."""
    line = json.dumps(planted({"timestamp": CLOCK[0]}, 0)).encode()
    auth = {"Authorization": "Bearer tok-good", "Content-Type": "application/x-ndjson"}
    cases = [
        # not granted: 403 whether or not such a contract exists
        (f"/v1/contracts/{SENTINEL}-c/streams/vehicle_events/events", auth, line, 403),
        (f"/v1/contracts/{live.id}/streams/{SENTINEL}-s/events", auth, line, 404),
        (
            f"/v1/contracts/{live.id}/streams/trips/events",
            {**auth, "Authorization": f"Bearer {SENTINEL}"},
            line,
            401,
        ),
        (
            f"/v1/contracts/{live.id}/streams/trips/events",
            {**auth, "Authorization": "Bearer tok-other"},
            line,
            403,
        ),
        (
            f"/v1/contracts/{live.id}/streams/trips/events",
            {**auth, "Content-Type": "text/plain"},
            line,
            415,
        ),
        (
            f"/v1/contracts/{live.id}/streams/trips/events",
            {**auth, "Content-Type": "application/json"},
            b"[" + line,
            400,
        ),
        (f"/v1/contracts/{live.id}/streams/trips/events", auth, line * 100_000, 413),
    ]
    for url, headers, data, status in cases:
        response = await client.post(url, data=data, headers=headers)
        expected.bodies.append(await response.text())
        assert response.status == status, url
    # A contract not in force at the events' time: every item rejected as CONTRACT_INACTIVE.
    sim = MobilitySimulator(SimOptions(seed=12, start_ms=NOW_MS - 600_000, size=200))
    inactive = [
        planted(r.record, i) for i, r in enumerate(take(sim.records(), 50, ["vehicle_events"]))
    ]
    CLOCK[0] = max(r["timestamp"] for r in inactive) + 1000
    response = await client.post(
        f"/v1/contracts/{future.id}/streams/vehicle_events/events",
        json=inactive,
        headers={"Authorization": "Bearer tok-good"},
    )
    body = await response.json()
    expected.bodies.append(json.dumps(body))
    assert {r["reason"] for r in body["rejected"]} == {"CONTRACT_INACTIVE"}
    assert len(body["rejected"]) == 50 and body["accepted"] == 0


def drain(consumer: KafkaConsumer, want: int, deadline_s: float = 60.0) -> list[Any]:
    """Poll until ``want`` records arrived (or the deadline passed); then a last short poll."""
    records: list[Any] = []
    deadline = time.monotonic() + deadline_s
    while len(records) < want and time.monotonic() < deadline:
        for batch in consumer.poll(timeout_ms=500).values():
            records.extend(batch)
    for batch in consumer.poll(timeout_ms=500).values():  # nothing more may come
        records.extend(batch)
    return records


async def test_10k_good_1k_bad_through_the_gateway_on_kafka(
    applied: tuple[Contract, Contract],
    kafka_bootstrap: str,
    gateway_client: ClientFactory,
    consumer_factory: Callable[..., KafkaConsumer],
    caplog: pytest.LogCaptureFixture,
) -> None:
    # Our own loggers at DEBUG; libraries at INFO (aiokafka's DEBUG dumps produce requests).
    caplog.set_level(logging.INFO)
    for name in ("broker", "connectors"):
        caplog.set_level(logging.DEBUG, logger=name)
    live, future = applied
    registry = CollectorRegistry()
    writer = KafkaBatchWriter(ProducerSettings(kafka_bootstrap))
    client = await gateway_client(
        [live, future],
        writer,
        grants=grant(live, future),
        clock=lambda: CLOCK[0],
        registry=registry,
        max_body_bytes=4 * 1024 * 1024,
    )
    expected = Expected()
    statuses = await post_batches(client, live, expected)
    assert set(statuses) == {200}
    await whole_request_faults(client, live, future, expected)
    metrics_text = await scrape(client)

    check_raw(live, expected, consumer_factory)
    dlq = check_dlq(live, expected, consumer_factory)
    assert len(expected.faults) == GOOD // BAD_EVERY
    assert len({reason for reason, _ in expected.faults.values()}) >= 12
    inactive = drain(consumer_factory(future.topic_dlq("vehicle_events")), 50)
    assert [dict(r.headers)[H_REASON] for r in inactive] == [b"CONTRACT_INACTIVE"] * 50

    header_text = " ".join(
        v.decode("utf-8", "replace") for r in dlq + inactive for _, v in r.headers
    )
    logs = "\n".join(r.getMessage() for r in caplog.records)
    assert_no_leak(
        {
            "DLQ headers": header_text,
            "logs": logs,
            "metrics": metrics_text,
            "responses": "\n".join(expected.bodies),
        },
        expected.values,
    )


def check_raw(
    live: Contract, expected: Expected, consumer_factory: Callable[..., KafkaConsumer]
) -> None:
    for stream, ids in expected.good_ids.items():
        schema = live.stream(stream).avro_schema
        records = drain(consumer_factory(live.topic_raw(stream)), sum(ids.values()))
        seen = Counter(decode_body(r.value, schema)["event_id"] for r in records)
        assert seen == ids, f"{stream}: every good event exactly once on raw"


def check_dlq(
    live: Contract, expected: Expected, consumer_factory: Callable[..., KafkaConsumer]
) -> list[Any]:
    consumer = consumer_factory(*(live.topic_dlq(s) for s in expected.good_ids))
    records = drain(consumer, len(expected.faults))
    got = {}
    for record in records:
        headers = dict(record.headers)
        got[headers[H_SOURCE].decode()] = (headers[H_REASON].decode(), headers[H_FIELD].decode())
    assert got == expected.faults
    assert len(records) == len(expected.faults)
    return records


def assert_no_leak(outputs: dict[str, str], values: set[str]) -> None:
    """No sentinel and no string value of the input in any output."""
    for name, text in outputs.items():
        assert SENTINEL not in text, name
        leaked = [v for v in values if v in text]
        assert leaked == [], f"{name} holds {len(leaked)} input values"
