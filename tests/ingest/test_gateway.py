"""The HTTP gateway against an in-memory writer: every status code, bodies, tokens, metrics."""

from __future__ import annotations

import json
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from broker.ingest.auth import (
    Authenticator,
    ContractGrant,
    ProviderGrant,
    hash_token,
    load_tokens,
)
from broker.kafka.writer import KafkaBatchWriter, ProducerSettings
from broker.metrics import METRIC_NAMES
from connectors.simulate import MobilitySimulator, SimOptions, take
from connectors.validate import H_REASON, H_SOURCE
from contracts import Contract
from tests.ingest.conftest import NOW_MS, ClientFactory, MemoryWriter, bearer, scrape

URL = "/v1/contracts/lyon-micromobility/streams/vehicle_events/events"


def good_events(n: int) -> list[dict[str, Any]]:
    """``n`` vehicle events a few minutes before ``NOW`` (the gateway clock in these tests)."""
    sim = MobilitySimulator(SimOptions(seed=7, start_ms=NOW_MS - 4 * 60_000, size=3000))
    records = [r.record for r in take(sim.records(), n, ["vehicle_events"])]
    assert max(r["timestamp"] for r in records) <= NOW_MS
    return records


@pytest.fixture
def mobility(examples: dict[str, Contract]) -> Contract:
    return examples["lyon-micromobility"]


async def test_json_array_is_accepted_and_written_to_raw(
    gateway_client: ClientFactory, mobility: Contract
) -> None:
    writer = MemoryWriter()
    client = await gateway_client([mobility], writer)
    events = good_events(20)
    response = await client.post(URL, json=events, headers=bearer("scootco"))
    body = await response.json()
    assert response.status == 200
    assert body["accepted"] == 20 and body["rejected"] == []
    assert response.headers["X-Request-Id"] == body["request_id"]
    raw = writer.topic("raw.lyon-micromobility.vehicle_events")
    assert [r.key for r in raw] == [e["vehicle_id"].encode() for e in events]


async def test_ndjson_rejections_name_index_line_reason_and_field(
    gateway_client: ClientFactory, mobility: Contract
) -> None:
    writer = MemoryWriter()
    client = await gateway_client([mobility], writer)
    good = good_events(3)
    missing = dict(good[1])
    del missing["timestamp"]
    lines = [json.dumps(good[0]), "", json.dumps(missing), "{not json", json.dumps(good[2])]
    response = await client.post(
        URL,
        data="\n".join(lines) + "\n",
        headers={**bearer("scootco"), "Content-Type": "application/x-ndjson"},
    )
    body = await response.json()
    assert response.status == 200
    assert body["accepted"] == 2
    assert body["rejected"] == [
        {"index": 1, "line": 3, "reason": "MISSING_FIELD", "field": "timestamp"},
        {"index": 2, "line": 4, "reason": "MALFORMED_JSON", "field": ""},
    ]
    dlq = writer.topic("dlq.lyon-micromobility.vehicle_events")
    assert [dict(r.headers)[H_REASON] for r in dlq] == [b"MISSING_FIELD", b"MALFORMED_JSON"]
    assert dict(dlq[0].headers)[H_SOURCE] == f"{body['request_id']}#1".encode()
    assert dlq[1].value == b"{not json"


@pytest.mark.parametrize(
    ("headers", "status", "code"),
    [
        ({}, 401, "UNAUTHENTICATED"),
        ({"Authorization": "Bearer wrong-token"}, 401, "UNAUTHENTICATED"),
        ({"Authorization": "Basic c2Nvb3Rjbzp4"}, 401, "UNAUTHENTICATED"),
        (bearer("staybnb"), 403, "FORBIDDEN"),
    ],
)
async def test_tokens_are_checked_and_scoped(
    gateway_client: ClientFactory,
    examples: dict[str, Contract],
    headers: dict[str, str],
    status: int,
    code: str,
) -> None:
    writer = MemoryWriter()
    client = await gateway_client(list(examples.values()), writer)
    response = await client.post(URL, json=good_events(2), headers=headers)
    assert response.status == status
    assert (await response.json())["error"] == code
    assert writer.records == []
    if status == 401:
        assert response.headers["WWW-Authenticate"].startswith("Bearer")


@pytest.mark.parametrize(
    ("provider", "url", "code"),
    [
        # staybnb is granted paris-str, which this gateway does not serve
        ("staybnb", "/v1/contracts/paris-str/streams/activity/events", "UNKNOWN_CONTRACT"),
        ("scootco", "/v1/contracts/lyon-micromobility/streams/telemetry/events", "UNKNOWN_STREAM"),
    ],
)
async def test_unknown_contract_or_stream_is_404(
    gateway_client: ClientFactory, mobility: Contract, provider: str, url: str, code: str
) -> None:
    client = await gateway_client([mobility], MemoryWriter())
    response = await client.post(url, json=good_events(1), headers=bearer(provider))
    assert response.status == 404
    assert (await response.json())["error"] == code


@pytest.mark.parametrize(
    ("data", "content_type", "status", "code"),
    [
        (b'{"a": 1}', "application/json", 400, "NOT_AN_ARRAY"),
        (b'[{"a": 1}', "application/json", 400, "MALFORMED_JSON"),
        (b'["\xff"]', "application/json", 400, "INVALID_UTF8"),
        (b"[NaN]", "application/json", 400, "MALFORMED_JSON"),
        (b"a,b\n1,2\n", "text/csv", 415, "UNSUPPORTED_MEDIA_TYPE"),
        (b"[]", "", 415, "UNSUPPORTED_MEDIA_TYPE"),
    ],
)
async def test_malformed_bodies_and_media_types(
    gateway_client: ClientFactory,
    mobility: Contract,
    data: bytes,
    content_type: str,
    status: int,
    code: str,
) -> None:
    client = await gateway_client([mobility], MemoryWriter())
    headers = {**bearer("scootco"), "Content-Type": content_type}
    response = await client.post(URL, data=data, headers=headers)
    assert response.status == status
    assert (await response.json())["error"] == code


async def test_ndjson_sent_as_json_is_told_the_right_content_type(
    gateway_client: ClientFactory, mobility: Contract
) -> None:
    client = await gateway_client([mobility], MemoryWriter())
    lines = b"\n".join(json.dumps(event).encode() for event in good_events(3))
    headers = {**bearer("scootco"), "Content-Type": "application/json"}
    response = await client.post(URL, data=lines, headers=headers)
    body = await response.json()
    assert (response.status, body["error"]) == (400, "NOT_AN_ARRAY")
    assert "Content-Type: application/x-ndjson" in body["message"]
    # A body that is no JSON at all gets no such hint.
    response = await client.post(URL, data=b"hello", headers=headers)
    assert "ndjson" not in (await response.json())["message"]


async def test_too_large_body_and_batch_are_413(
    gateway_client: ClientFactory, mobility: Contract
) -> None:
    writer = MemoryWriter()
    client = await gateway_client([mobility], writer, max_batch=10, max_body_bytes=20_000)
    response = await client.post(URL, json=good_events(11), headers=bearer("scootco"))
    assert response.status == 413
    assert (await response.json())["error"] == "BATCH_TOO_LARGE"
    big = b"[" + b" " * 30_000 + b"]"
    response = await client.post(
        URL, data=big, headers={**bearer("scootco"), "Content-Type": "application/json"}
    )
    assert response.status == 413
    assert (await response.json())["error"] == "BODY_TOO_LARGE"
    chunks = (b" " * 1000 for _ in range(40))  # chunked: no Content-Length to check up front
    response = await client.post(
        URL, data=_aiter(chunks), headers={**bearer("scootco"), "Content-Type": "application/json"}
    )
    assert response.status == 413
    assert writer.records == []


async def _aiter(chunks: Any) -> Any:
    for chunk in chunks:
        yield chunk


async def test_503_when_kafka_fails_and_a_retry_is_not_a_duplicate(
    gateway_client: ClientFactory, mobility: Contract
) -> None:
    writer = MemoryWriter()
    client = await gateway_client([mobility], writer)
    events = good_events(5)
    writer.fail = True
    response = await client.post(URL, json=events, headers=bearer("scootco"))
    assert response.status == 503
    assert (await response.json())["error"] == "KAFKA_UNAVAILABLE"
    health = await client.get("/healthz")
    assert health.status == 503
    assert await health.json() == {
        "status": "degraded",
        "kafka": "not connected",
        "reason": "KAFKA_WRITE_FAILED",
    }
    writer.fail = False
    response = await client.post(URL, json=events, headers=bearer("scootco"))
    body = await response.json()
    health = await client.get("/healthz")
    assert (health.status, (await health.json())["status"]) == (200, "ok")
    # The duplicate filter forgot the failed batch: the retry is accepted, not a duplicate.
    assert (response.status, body["accepted"], body["rejected"]) == (200, 5, [])
    response = await client.post(URL, json=events, headers=bearer("scootco"))
    reasons = {r["reason"] for r in (await response.json())["rejected"]}
    assert reasons == {"DUPLICATE_EVENT"}


async def test_503_with_a_real_producer_on_a_dead_port(
    gateway_client: ClientFactory, mobility: Contract
) -> None:
    writer = KafkaBatchWriter(
        ProducerSettings("127.0.0.1:1", ack_timeout_s=5.0, request_timeout_ms=2000)
    )
    client = await gateway_client([mobility], writer)
    response = await client.post(URL, json=good_events(3), headers=bearer("scootco"))
    assert response.status == 503
    assert (await response.json())["error"] == "KAFKA_UNAVAILABLE"


async def test_metrics_count_by_reason_without_values(
    gateway_client: ClientFactory, mobility: Contract
) -> None:
    registry = CollectorRegistry()
    client = await gateway_client([mobility], MemoryWriter(), registry=registry)
    events = good_events(4)
    events[0] = {**events[0], "lat": 99.0}
    await client.post(URL, json=events, headers=bearer("scootco"))
    text = await scrape(client)
    assert (
        'respublica_events_ingested_total{contract="lyon-micromobility",'
        'source="gateway",stream="vehicle_events"} 4.0'
    ) in text
    assert (
        'respublica_events_rejected_total{contract="lyon-micromobility",'
        'reason="OUT_OF_RANGE",stream="vehicle_events"} 1.0'
    ) in text
    assert 'respublica_http_request_seconds_count{route="events"} 1.0' in text
    assert 'respublica_http_requests_total{route="events",status="200"} 1.0' in text


async def test_metrics_endpoint_exposes_every_documented_metric_and_no_data_value(
    gateway_client: ClientFactory, mobility: Contract
) -> None:
    client = await gateway_client([mobility], MemoryWriter(), registry=CollectorRegistry())
    events = good_events(3)
    sentinel = "SENTINEL-9c4e-vehicle"
    events[0] = {**events[0], "vehicle_id": sentinel, "lat": 99.0}
    events[1] = {**events[1], "unexpected_" + sentinel.lower().replace("-", "_"): 1}
    await client.post(URL, json=events, headers=bearer("scootco"))
    text = await scrape(client)
    for name in METRIC_NAMES:  # the catalogue of docs/metrics.md, all on one registry
        assert f"# HELP {name} " in text, name
    assert "sentinel" not in text.lower()


def test_authenticator_finds_the_provider_by_token_hash() -> None:
    grants = [
        ProviderGrant(id=f"p{i}", token_sha256=hash_token(f"t{i}"), contracts=("c",))
        for i in range(3)
    ]
    auth = Authenticator(grants)
    assert auth.provider("Bearer t2") == grants[2]
    assert auth.provider("bearer  t0 ") == grants[0]
    for header in (None, "", "Bearer", "Bearer ", "Token t1", "Bearer t3"):
        assert auth.provider(header) is None


def test_tokens_file_errors_name_paths_not_values(tmp_path: Any) -> None:
    path = tmp_path / "tokens.yaml"
    path.write_text(
        "providers:\n  - id: scootco\n    token_sha256: SECRET-NOT-HEX\n"
        "    contracts: [lyon-micromobility]\n"
    )
    with pytest.raises(Exception, match=r"providers\.0\.token_sha256") as caught:
        load_tokens(path)
    assert "SECRET" not in str(caught.value)
    path.write_text(
        f"providers:\n  - id: scootco\n    token_sha256: {hash_token('x')}\n"
        "    contracts: [lyon-micromobility]\n"
    )
    assert load_tokens(path)[0].contracts == (ContractGrant(id="lyon-micromobility"),)


class BrokenWriter(MemoryWriter):
    async def write(self, records: Any) -> None:
        msg = "SENTINEL-from-a-bug"
        raise RuntimeError(msg)


async def test_a_bug_is_a_500_without_details(
    gateway_client: ClientFactory, mobility: Contract, caplog: pytest.LogCaptureFixture
) -> None:
    client = await gateway_client([mobility], BrokenWriter())
    response = await client.post(URL, json=good_events(2), headers=bearer("scootco"))
    text = await response.text()
    assert response.status == 500 and json.loads(text)["error"] == "INTERNAL"
    assert "SENTINEL" not in text + caplog.text


async def test_a_rejection_with_a_hint_carries_it_as_detail(
    gateway_client: ClientFactory, mobility: Contract
) -> None:
    client = await gateway_client([mobility], MemoryWriter())
    good = good_events(2)
    seconds = {**good[1], "timestamp": good[1]["timestamp"] // 1000}
    response = await client.post(URL, json=[good[0], seconds], headers=bearer("scootco"))
    body = await response.json()
    assert body["rejected"] == [
        {
            "index": 1,
            "reason": "TOO_LATE",
            "field": "timestamp",
            "detail": "the time looks like seconds: send milliseconds",
        }
    ]
