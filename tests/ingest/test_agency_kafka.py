"""MDS Agency 2.0 through the gateway onto the real broker: raw, DLQ, availability from state.

A provider that follows the spec registers its vehicles, then pushes Events and a Trip as MDS
2.0.2 publishes them (the fixtures, checked by ``tests/connectors/test_conformance.py``). Each
is stored on the first try; ``raw.`` holds the contract's records, with ``event_type`` from
``vehicle_state`` (a ``trip_end`` leaves the vehicle ``available``); a malformed item is on the
DLQ as sent, with its reason; a wrong content type stores nothing.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from kafka import KafkaAdminClient, KafkaConsumer

from broker.ingest.auth import ProviderGrant, hash_token
from broker.kafka import topics
from broker.kafka.serde import decode_body
from broker.kafka.writer import KafkaBatchWriter, ProducerSettings
from connectors.validate import H_DETAIL, H_FIELD, H_REASON, H_SOURCE
from contracts import Contract
from tests.connectors.test_conformance import mds_event_problems, mds_trip_problems
from tests.ingest.conftest import ClientFactory
from tests.ingest.test_agency import MEDIA, events, trips, vehicles
from tests.ingest.test_gateway_kafka import drain

pytestmark = pytest.mark.integration


@pytest.fixture
def live(
    kafka_admin: KafkaAdminClient, kafka_bootstrap: str, contract_copy: Callable[..., Contract]
) -> Iterator[Contract]:
    contract = contract_copy()
    with topics.TopicAdmin(kafka_bootstrap) as admin:
        topics.apply(admin, topics.plan(admin, [contract]))
    yield contract
    kafka_admin.delete_topics([t.name for t in topics.contract_topics(contract)])


async def test_agency_events_and_trips_reach_raw_with_availability_from_vehicle_state(
    live: Contract,
    kafka_bootstrap: str,
    gateway_client: ClientFactory,
    consumer_factory: Callable[..., KafkaConsumer],
) -> None:
    grants = [ProviderGrant(id="scootco", token_sha256=hash_token("tok"), contracts=(live.id,))]
    writer = KafkaBatchWriter(ProducerSettings(kafka_bootstrap))
    client = await gateway_client([live], writer, grants=grants)
    headers = {"Authorization": "Bearer tok", "Accept": MEDIA, "Content-Type": MEDIA}
    root = f"/mds/agency/contracts/{live.id}"

    async def post(path: str, items: Any, **extra: str) -> tuple[int, dict[str, Any]]:
        response = await client.post(
            f"{root}{path}", data=json.dumps(items), headers={**headers, **extra}
        )
        return response.status, await response.json(content_type=None)

    good_events, good_trips = events(), trips()
    assert [p for e in good_events for p in mds_event_problems(e)] == []
    assert [p for t in good_trips for p in mds_trip_problems(t)] == []
    assert (await post("/vehicles", vehicles()))[0] == 201
    status, body = await post("/events", good_events)
    assert (status, body["success"], body["total"], body["failures"]) == (201, 5, 5, [])
    status, body = await post("/trips", good_trips)
    assert (status, body["success"], body["total"], body["failures"]) == (201, 1, 1, [])

    wrong = await client.post(
        f"{root}/events",
        data=json.dumps(good_events),
        headers={**headers, "Content-Type": "text/csv"},
    )
    assert wrong.status == 415
    no_version = await client.post(
        f"{root}/events", data=json.dumps(good_events), headers={**headers, "Accept": "*/*"}
    )
    assert no_version.status == 406

    bad = [{**good_events[0], "event_id": "ev-x", "timestamp": "noon"}, {"device_id": "nobody"}]
    status, body = await post("/events", bad)
    assert (status, body["success"], body["total"]) == (400, 0, 2)
    assert [(f["item"], f["error"], f["error_details"], f["reason"]) for f in body["failures"]] == [
        ({"index": 0}, "bad_param", ["timestamp"], "WRONG_TYPE"),
        ({"index": 1}, "missing_param", ["event_id"], "MISSING_FIELD"),
    ]

    schema = live.stream("vehicle_events").avro_schema
    stored = drain(consumer_factory(live.topic_raw("vehicle_events")), 5)
    records = sorted((decode_body(r.value, schema) for r in stored), key=lambda r: r["timestamp"])
    assert [(r["event_id"], r["event_type"]) for r in records] == [
        (e["event_id"], s)
        for e, s in zip(
            good_events,
            ["available", "on_trip", "available", "reserved", "unavailable"],
            strict=True,
        )
    ]
    trip_end = records[2]
    assert good_events[2]["event_types"] == ["trip_end"] and trip_end["event_type"] == "available"
    assert trip_end["trip_id"] == good_trips[0]["trip_id"]
    (trip,) = drain(consumer_factory(live.topic_raw("trips")), 1)
    assert decode_body(trip.value, live.stream("trips").avro_schema)["vehicle_type"] == (
        "scooter_standing"
    )

    dlq = drain(consumer_factory(live.topic_dlq("vehicle_events")), 2)
    assert [(dict(r.headers)[H_REASON], dict(r.headers)[H_FIELD]) for r in dlq] == [
        (b"WRONG_TYPE", b"timestamp"),
        (b"MISSING_FIELD", b"event_id"),
    ]
    assert [dict(r.headers)[H_SOURCE] for r in dlq] == [
        f"{body['request_id']}#{i}".encode() for i in range(2)
    ]
    assert [r.value for r in dlq] == [json.dumps(item).encode() for item in bad]
    assert all(H_DETAIL not in dict(r.headers) for r in dlq)
