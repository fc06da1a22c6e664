"""MDS Agency 2.0 on the gateway, against an in-memory writer: negotiation, bodies, vehicles.

The objects are the spec-valid fixtures of ``tests/ingest/data`` (checked against MDS 2.0.2 by
``tests/connectors/test_conformance.py``); what reaches Kafka is in ``test_agency_kafka.py``.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from broker.ingest.auth import ContractGrant, ProviderGrant, hash_token
from broker.kafka.serde import decode_body
from connectors import mds
from connectors.simulate import SimOptions
from connectors.simulate.mds import MdsFleet
from connectors.simulate.mds_faults import AgencyFaultKind, AgencyFaults
from connectors.validate import H_DETAIL, H_FIELD, H_REASON
from contracts import Contract
from tests.connectors.test_conformance import mds_vehicle_problems
from tests.ingest.conftest import NOW_MS, TOKENS, ClientFactory, MemoryWriter, data_file

ROOT = "/mds/agency/contracts/lyon-micromobility"
MEDIA = "application/vnd.mds+json;version=2.0"
HEADERS = {
    "Authorization": f"Bearer {TOKENS['scootco']}",
    "Accept": MEDIA,
    "Content-Type": MEDIA,
}
PROVIDER = "d45c942d-4a74-5c86-85b6-b28db00415cb"
DEVICES = ("2b6c6a0e-0d4f-4f2a-9a6b-5c1f0e3d2a11", "7a1e2d3c-4b5a-4968-8776-655443322110")


def events() -> list[dict[str, Any]]:
    """The fixture's events in the territory (its sixth, ``removed``, is in London)."""
    found = json.loads(data_file("mds_2_0_events.json"))["events"]
    assert found[5]["location"]["lat"] > 51
    return found[:5]


def trips() -> list[dict[str, Any]]:
    return json.loads(data_file("mds_2_0_trips.json"))["trips"]


def vehicles() -> list[dict[str, Any]]:
    found = sorted({e["device_id"] for e in events()})
    assert tuple(found) == DEVICES
    return [
        {
            "device_id": DEVICES[0],
            "provider_id": PROVIDER,
            "vehicle_id": "LYO-00001",
            "vehicle_type": "scooter_standing",
            "propulsion_types": ["electric"],
        },
        {
            "device_id": DEVICES[1],
            "provider_id": PROVIDER,
            "vehicle_id": "LYO-00002",
            "vehicle_type": "bicycle",
            "propulsion_types": ["human", "electric_assist"],
        },
    ]


@pytest.fixture
def mobility(examples: dict[str, Contract]) -> Contract:
    return examples["lyon-micromobility"]


async def post(client: Any, path: str, items: Any, **headers: str) -> tuple[int, dict[str, Any]]:
    response = await client.post(
        f"{ROOT}{path}", data=json.dumps(items), headers={**HEADERS, **headers}
    )
    body = await response.json(content_type=None)
    if response.status < 500:
        assert response.headers["Content-Type"] == MEDIA
    assert response.headers["X-Request-Id"] == body["request_id"]
    return response.status, body


def raw(writer: MemoryWriter, contract: Contract, stream: str) -> list[dict[str, Any]]:
    schema = contract.stream(stream).avro_schema
    return [decode_body(r.value, schema) for r in writer.topic(contract.topic_raw(stream))]


async def test_vehicles_then_events_and_trips_are_accepted_on_the_first_try(
    gateway_client: ClientFactory, mobility: Contract
) -> None:
    writer = MemoryWriter()
    client = await gateway_client([mobility], writer)
    assert [mds_vehicle_problems(v) for v in vehicles()] == [[], []]

    status, body = await post(client, "/vehicles", vehicles())
    assert (status, body["success"], body["total"], body["failures"]) == (201, 2, 2, [])
    assert body["version"] == "2.0.2"
    status, body = await post(client, "/events", events())
    assert (status, body["success"], body["total"], body["failures"]) == (201, 5, 5, [])
    status, body = await post(client, "/trips", trips())
    assert (status, body["success"], body["total"], body["failures"]) == (201, 1, 1, [])

    records = raw(writer, mobility, "vehicle_events")
    # The state after each event, whatever its event_types: trip_end leaves it available.
    assert [r["event_type"] for r in records] == [
        "available", "on_trip", "available", "reserved", "unavailable",
    ]  # fmt: skip
    assert {(r["vehicle_id"], r["vehicle_type"], r["propulsion"]) for r in records} == {
        (DEVICES[0], "scooter_standing", "electric"),
        (DEVICES[1], "bicycle", "electric_assist"),
    }
    trip_id = trips()[0]["trip_id"]
    assert [r["trip_id"] for r in records[:3]] == [None, trip_id, trip_id]  # event -> trip
    (trip,) = raw(writer, mobility, "trips")
    assert (trip["trip_id"], trip["vehicle_type"], trip["distance_m"]) == (
        trip_id,
        "scooter_standing",
        620.0,
    )


async def test_malformed_items_get_mds_failures_by_index_and_the_good_ones_are_stored(
    gateway_client: ClientFactory, mobility: Contract
) -> None:
    writer = MemoryWriter()
    client = await gateway_client([mobility], writer)
    await post(client, "/vehicles", vehicles())
    good = events()
    no_time = {k: v for k, v in good[1].items() if k != "timestamp"}
    seconds = {**good[2], "timestamp": good[2]["timestamp"] // 1000}
    london = {**good[3], "location": {"lat": 51.5072, "lng": -0.1276}}
    battery = {**good[4], "battery_percent": "full"}
    stranger = {**good[0], "device_id": "SENTINEL-0f4e-device", "event_id": "e-5"}
    batch = [good[0], no_time, seconds, london, battery, stranger, 42]
    status, body = await post(client, "/events", batch)

    assert (status, body["success"], body["total"]) == (201, 1, 7)
    got = [
        (f["item"], f["error"], f["error_details"], f["reason"], f.get("detail"))
        for f in body["failures"]
    ]
    assert got == [
        ({"index": 1}, "missing_param", ["timestamp"], "MISSING_FIELD", None),
        (
            {"index": 2},
            "bad_param",
            ["timestamp"],
            "TOO_LATE",
            "the time looks like seconds: send milliseconds",
        ),
        (
            {"index": 3},
            "bad_param",
            ["location.lat", "location.lng"],
            "OUTSIDE_TERRITORY",
            None,
        ),
        ({"index": 4}, "bad_param", ["battery_percent"], "WRONG_TYPE", None),
        (
            {"index": 5},
            "unregistered",
            ["device_id"],
            "MISSING_FIELD",
            "the device is not registered: register it with POST /vehicles first",
        ),
        ({"index": 6}, "bad_param", ["item"], "NOT_AN_OBJECT", None),
    ]
    assert all(f["error_description"].startswith(f["reason"]) for f in body["failures"])
    text = json.dumps(body)
    assert "SENTINEL" not in text and good[3]["event_id"] not in text  # nothing echoed
    dlq = writer.topic(mobility.topic_dlq("vehicle_events"))
    assert [dict(r.headers)[H_REASON] for r in dlq][4] == b"MISSING_FIELD"
    assert dict(dlq[4].headers)[H_FIELD] == b"vehicle_type"
    assert dict(dlq[4].headers)[H_DETAIL].startswith(b"the device is not registered")
    assert dlq[4].value == json.dumps(stranger).encode()  # the item as sent


async def test_a_batch_with_nothing_stored_is_400_or_404_and_a_retry_is_201(
    gateway_client: ClientFactory, mobility: Contract
) -> None:
    writer = MemoryWriter()
    client = await gateway_client([mobility], writer)
    good = events()
    status, body = await post(client, "/events", good[:2])  # nothing registered yet
    assert (status, body["success"]) == (404, 0)
    assert {f["error"] for f in body["failures"]} == {"unregistered"}
    await post(client, "/vehicles", vehicles())
    status, body = await post(client, "/events", [{"device_id": DEVICES[0]}])
    assert (status, body["failures"][0]["error"]) == (400, "missing_param")

    writer.fail = True  # Kafka down: nothing stored, the request may be sent again
    status, body = await post(client, "/events", good)
    assert (status, body["error"]) == (503, "KAFKA_UNAVAILABLE")
    assert body["error_details"] and body["error_description"]
    writer.fail = False
    status, body = await post(client, "/events", good)
    assert (status, body["success"], body["failures"]) == (201, 5, [])
    status, body = await post(client, "/events", good)  # the same batch again
    assert (status, body["success"]) == (201, 0)
    assert {f["reason"] for f in body["failures"]} == {"DUPLICATE_EVENT"}


@pytest.mark.parametrize(
    ("headers", "status", "error"),
    [
        ({"Accept": ""}, 406, "NOT_ACCEPTABLE"),  # MDS reads no version as Agency 0.3
        ({"Accept": "application/json"}, 406, "NOT_ACCEPTABLE"),
        ({"Accept": "application/vnd.mds+json;version=1.2"}, 406, "NOT_ACCEPTABLE"),
        ({"Accept": "application/vnd.mds+json"}, 406, "NOT_ACCEPTABLE"),
        ({"Content-Type": "text/plain"}, 415, "UNSUPPORTED_MEDIA_TYPE"),
        ({"Content-Type": "application/x-ndjson"}, 415, "UNSUPPORTED_MEDIA_TYPE"),
        ({"Content-Type": "application/vnd.mds+json;version=1.2"}, 415, "UNSUPPORTED_MEDIA_TYPE"),
        ({"Content-Type": "application/json"}, 201, None),
        ({"Content-Type": "application/vnd.mds+json"}, 201, None),
        ({"Accept": f"text/html, {MEDIA}"}, 201, None),
        ({"Accept": 'application/vnd.mds+json; version="2.0"'}, 201, None),
    ],
)
async def test_version_negotiation_and_content_types(
    gateway_client: ClientFactory,
    mobility: Contract,
    headers: dict[str, str],
    status: int,
    error: str | None,
) -> None:
    client = await gateway_client([mobility], MemoryWriter())
    got, body = await post(client, "/vehicles", vehicles(), **headers)
    assert (got, body.get("error")) == (status, error)
    if error is not None:  # an MDS Error Message
        assert set(body) == {"error", "error_description", "error_details", "request_id"}


async def test_tokens_grants_and_unserved_contracts(
    gateway_client: ClientFactory, mobility: Contract
) -> None:
    trips_only = ProviderGrant(
        id="tripsonly",
        token_sha256=hash_token("tok-trips"),
        contracts=(ContractGrant(id="lyon-micromobility", streams=("trips",)),),
    )
    served = ProviderGrant(
        id="elsewhere", token_sha256=hash_token("tok-else"), contracts=("paris-micromobility",)
    )
    client = await gateway_client([mobility], MemoryWriter(), grants=(trips_only, served))
    cases = [
        ("Bearer nope", "/events", 401, "UNAUTHENTICATED"),
        ("Bearer tok-trips", "/events", 403, "STREAM_NOT_GRANTED"),
        ("Bearer tok-else", "/events", 403, "FORBIDDEN"),
        ("Bearer tok-else", "/vehicles", 403, "FORBIDDEN"),
    ]
    for token, path, status, error in cases:
        got, body = await post(client, path, events(), Authorization=token)
        assert (got, body["error"]) == (status, error), (token, path)
    response = await client.post(
        "/mds/agency/contracts/paris-micromobility/vehicles",
        data=json.dumps(vehicles()),
        headers={**HEADERS, "Authorization": "Bearer tok-else"},
    )
    assert (response.status, (await response.json(content_type=None))["error"]) == (
        404,
        "UNKNOWN_CONTRACT",
    )
    got, _ = await post(client, "/vehicles", vehicles(), Authorization="Bearer tok-trips")
    assert got == 201  # any stream of the contract lets a provider register its vehicles


async def test_vehicle_register_update_read_back_and_limit(
    gateway_client: ClientFactory, mobility: Contract
) -> None:
    writer = MemoryWriter()
    client = await gateway_client([mobility], writer, max_vehicles=2)
    first, second = vehicles()
    assert (await post(client, "/vehicles", [first]))[0] == 201
    status, body = await post(client, "/vehicles", [first])
    assert (status, body["failures"][0]["error"]) == (409, "already_registered")
    response = await client.put(f"{ROOT}/vehicles", data=json.dumps([second]), headers=HEADERS)
    body = await response.json(content_type=None)
    assert (response.status, body["failures"][0]["error"]) == (404, "unregistered")
    broken = [
        {"device_id": "SENTINEL-x"},
        {**second, "vehicle_type": "hovercraft"},
        {**second, "propulsion_types": []},
        second,
        {**second, "device_id": "third"},
    ]
    status, body = await post(client, "/vehicles", broken)
    assert (status, body["success"], body["total"]) == (201, 1, 5)
    assert [(f["item"]["index"], f["error"], f["error_details"]) for f in body["failures"]] == [
        (0, "missing_param", ["provider_id", "vehicle_id", "vehicle_type", "propulsion_types"]),
        (1, "bad_param", ["vehicle_type"]),
        (2, "bad_param", ["propulsion_types"]),
        (4, "bad_param", ["device_id"]),  # over the register's limit (2)
    ]
    assert "SENTINEL" not in json.dumps(body)

    moped = {**first, "vehicle_type": "moped", "propulsion_types": ["combustion"]}
    response = await client.put(f"{ROOT}/vehicles", data=json.dumps([moped]), headers=HEADERS)
    assert (response.status, (await response.json(content_type=None))["success"]) == (200, 1)
    response = await client.get(f"{ROOT}/vehicles/{DEVICES[0]}", headers=HEADERS)
    body = await response.json(content_type=None)
    assert response.status == 200
    assert body["vehicles"] == [{"vehicle_type": "moped", "propulsion_types": ["combustion"]}]
    assert DEVICES[0] not in json.dumps(body)  # registered, and not echoed
    response = await client.get(f"{ROOT}/vehicles/SENTINEL-unknown", headers=HEADERS)
    body = await response.json(content_type=None)
    assert (response.status, body["error"]) == (404, "unregistered")
    assert "SENTINEL" not in json.dumps(body)

    await post(client, "/events", events()[:1])
    (record,) = raw(writer, mobility, "vehicle_events")
    assert (record["vehicle_type"], record["propulsion"]) == ("moped", "combustion")


async def test_a_body_that_is_not_a_json_array_is_refused_whole(
    gateway_client: ClientFactory, mobility: Contract
) -> None:
    writer = MemoryWriter()
    client = await gateway_client([mobility], writer)
    for data, status, error in [
        ("[]", 400, "EMPTY_BATCH"),
        ('{"device_id": 1}', 400, "NOT_AN_ARRAY"),
        ("[{}, {oops]", 400, "MALFORMED_JSON"),
    ]:
        response = await client.post(f"{ROOT}/events", data=data, headers=HEADERS)
        body = await response.json(content_type=None)
        assert (response.status, body["error"]) == (status, error), data
    assert writer.records == []


def test_the_clock_of_these_tests_keeps_the_fixtures_within_the_lateness(
    mobility: Contract,
) -> None:
    lateness_ms = mobility.stream("vehicle_events").allowed_lateness.total_seconds() * 1000
    assert all(NOW_MS - lateness_ms <= e["timestamp"] <= NOW_MS for e in events())


@pytest.mark.parametrize(("stream", "path", "since_ms"), [
    ("vehicle_events", "/events", 4 * 60_000),
    ("trips", "/trips", 2 * 3_600_000),
])  # fmt: skip
async def test_simulated_fleet_and_its_faults_get_exactly_the_expected_answers(
    gateway_client: ClientFactory, mobility: Contract, stream: str, path: str, since_ms: int
) -> None:
    fleet = MdsFleet(SimOptions(seed=3, start_ms=NOW_MS - 3 * 3_600_000, size=1500))
    fleet.advance(NOW_MS)
    objects = (
        fleet.events_between(NOW_MS - since_ms, NOW_MS + 1)
        if stream == "vehicle_events"
        else fleet.trips_ending_between(NOW_MS - since_ms, NOW_MS + 1)
    )
    mixed = list(AgencyFaults(stream, seed=1).mix(objects, share=0.2))
    faults = {i: item.fault for i, item in enumerate(mixed) if item.fault is not None}
    assert len(objects) > 100 and {f.kind for f in faults.values()} == set(AgencyFaultKind)
    writer = MemoryWriter()
    client = await gateway_client([mobility], writer)
    status, body = await post(client, "/vehicles", list(fleet.vehicles.values()))
    assert (status, body["success"]) == (201, len(fleet.vehicles))

    response = await client.post(
        f"{ROOT}{path}", data=b"[" + b",".join(i.payload for i in mixed) + b"]", headers=HEADERS
    )
    body = await response.json(content_type=None)
    assert (response.status, body["success"], body["total"]) == (201, len(objects), len(mixed))
    sources = mds.EVENT_SOURCES if stream == "vehicle_events" else mds.TRIP_SOURCES
    assert [(f["item"]["index"], f["reason"], f["error_details"]) for f in body["failures"]] == [
        (
            i,
            f.reason.value,
            ["device_id"]
            if f.kind is AgencyFaultKind.UNREGISTERED_DEVICE
            else mds.source_fields(f.field, sources) or ["item"],
        )
        for i, f in faults.items()
    ]
    assert len(raw(writer, mobility, stream)) == len(objects)


def test_failures_can_name_the_mds_field_behind_every_field_of_the_streams(
    mobility: Contract,
) -> None:
    assert set(mds.EVENT_SOURCES) == set(mobility.stream("vehicle_events").fields)
    assert set(mds.TRIP_SOURCES) == set(mobility.stream("trips").fields)
