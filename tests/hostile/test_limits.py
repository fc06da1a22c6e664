"""Size, encoding and time limits of the gateway against a hostile provider (in-memory writer).

Each limit is probed at, just under and just over its value. Before streaming, an element
of a JSON array skipped the per-item cap, and the body was parsed whole.
"""

from __future__ import annotations

import gzip
import json
import tracemalloc
import zlib
from typing import Any

import pytest

from broker.ingest.gateway import GATEWAY_KEY
from connectors.validate import DLQ_MAX_VALUE_BYTES, H_ORIGINAL_BYTES, H_REASON
from contracts import Contract
from tests.hostile.conftest import (
    NDJSON,
    URL,
    event,
    headers,
    open_request,
    read_response,
    sized_event,
    until,
)
from tests.ingest.conftest import TOKENS, ClientFactory, MemoryWriter

pytestmark = pytest.mark.unit
ITEM = 64 * 1024  # the default per-item cap
TOKEN = TOKENS["scootco"]


@pytest.fixture
def mobility(examples: dict[str, Contract]) -> Contract:
    return examples["lyon-micromobility"]


def as_array(items: list[bytes]) -> bytes:
    return b"[" + b",".join(items) + b"]"


@pytest.mark.parametrize("kind", ["ndjson", "array"])
@pytest.mark.parametrize(("size", "accepted"), [(ITEM - 1, True), (ITEM, True), (ITEM + 1, False)])
async def test_item_at_under_and_over_the_cap(
    gateway_client: ClientFactory, mobility: Contract, kind: str, size: int, accepted: bool
) -> None:
    writer = MemoryWriter()
    client = await gateway_client([mobility], writer)
    items = [sized_event(0, 400), sized_event(1, size), sized_event(2, 400)]
    body = b"\n".join(items) if kind == "ndjson" else as_array(items)
    content_type = NDJSON if kind == "ndjson" else "application/json"
    response = await client.post(URL, data=body, headers=headers(TOKEN, content_type))
    answer = await response.json()
    assert response.status == 200
    if accepted:
        assert (answer["accepted"], answer["rejected"]) == (3, [])
        return
    assert answer["accepted"] == 2
    assert [(r["index"], r["reason"]) for r in answer["rejected"]] == [(1, "PAYLOAD_TOO_LARGE")]
    [dead] = writer.topic("dlq.lyon-micromobility.vehicle_events")
    assert dict(dead.headers)[H_REASON] == b"PAYLOAD_TOO_LARGE"
    assert dict(dead.headers)[H_ORIGINAL_BYTES] == str(size).encode()
    assert len(dead.value) == DLQ_MAX_VALUE_BYTES and items[1].startswith(dead.value)


async def test_a_two_mebibyte_array_element_is_rejected_not_produced(
    gateway_client: ClientFactory, mobility: Contract
) -> None:
    writer = MemoryWriter()
    client = await gateway_client([mobility], writer)
    huge = json.dumps(event(0, trip_id="x" * 2 * 1024 * 1024)).encode()
    response = await client.post(
        URL, data=as_array([huge, sized_event(1, 500)]), headers=headers(TOKEN, "application/json")
    )
    answer = await response.json()
    assert response.status == 200 and answer["accepted"] == 1
    assert answer["rejected"] == [{"index": 0, "reason": "PAYLOAD_TOO_LARGE", "field": ""}]
    assert max(len(r.value) for r in writer.records) <= DLQ_MAX_VALUE_BYTES


BODY = 100_000


def padded_body(kind: str, size: int) -> bytes:
    """Good events padded with blank space to exactly ``size`` bytes."""
    items = [sized_event(i, 1000) for i in range(20)]
    if kind == "ndjson":
        core = b"\n".join(items)
        return core + b"\n" * (size - len(core))
    core = as_array(items)
    return core[:-1] + b" " * (size - len(core)) + b"]"


@pytest.mark.parametrize("kind", ["ndjson", "array"])
@pytest.mark.parametrize("chunked", [False, True])
@pytest.mark.parametrize(("size", "status"), [(BODY - 1, 200), (BODY, 200), (BODY + 1, 413)])
async def test_body_at_under_and_over_the_limit(
    gateway_client: ClientFactory,
    mobility: Contract,
    kind: str,
    chunked: bool,
    size: int,
    status: int,
) -> None:
    writer = MemoryWriter()
    client = await gateway_client([mobility], writer, max_body_bytes=BODY)
    body = padded_body(kind, size)
    data: Any = _chunks(body) if chunked else body  # chunked: no Content-Length to check
    content_type = NDJSON if kind == "ndjson" else "application/json"
    response = await client.post(URL, data=data, headers=headers(TOKEN, content_type))
    assert response.status == status
    if status == 200:
        assert (await response.json())["accepted"] == 20
    else:
        assert (await response.json())["error"] == "BODY_TOO_LARGE"
        assert writer.records == []


async def _chunks(body: bytes, size: int = 7000) -> Any:
    for start in range(0, len(body), size):
        yield body[start : start + size]


@pytest.mark.parametrize(("count", "status"), [(9, 200), (10, 200), (11, 413)])
async def test_batch_at_under_and_over_the_item_count(
    gateway_client: ClientFactory, mobility: Contract, count: int, status: int
) -> None:
    client = await gateway_client([mobility], MemoryWriter(), max_batch=10)
    body = b"\n".join(sized_event(i, 300) for i in range(count))
    response = await client.post(URL, data=body, headers=headers(TOKEN))
    assert response.status == status


async def test_16_mib_of_tiny_items_is_refused_at_the_item_count(
    gateway_client: ClientFactory, mobility: Contract
) -> None:
    client = await gateway_client([mobility], MemoryWriter())
    body = b"[" + b",".join([b"{}"] * (16 * 1024 * 1024 // 3)) + b"]"
    tracemalloc.start()
    try:
        response = await client.post(URL, data=body, headers=headers(TOKEN, "application/json"))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert response.status == 413
    assert (await response.json())["error"] == "BATCH_TOO_LARGE"
    # The client's own 16 MiB body is not traced (allocated before start); the gateway's
    # parse of 5.6 million items would be hundreds of MB.
    assert peak < 32 * 1024 * 1024


async def test_gzip_body_is_accepted_and_a_gzip_bomb_is_refused_without_inflating_it(
    gateway_client: ClientFactory, mobility: Contract
) -> None:
    writer = MemoryWriter()
    client = await gateway_client([mobility], writer, max_body_bytes=1024 * 1024)
    good = gzip.compress(b"\n".join(sized_event(i, 500) for i in range(10)))
    gz = headers(TOKEN, NDJSON, **{"Content-Encoding": "gzip"})
    response = await client.post(URL, data=good, headers=gz)
    assert (response.status, (await response.json())["accepted"]) == (200, 10)

    packer = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    zeros = bytes(1024 * 1024)
    bomb = b"".join(packer.compress(zeros) for _ in range(256)) + packer.flush()  # 256 MiB
    assert len(bomb) < 1024 * 1024
    tracemalloc.start()
    try:
        response = await client.post(URL, data=bomb, headers=gz)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert response.status == 413
    assert (await response.json())["error"] == "BODY_TOO_LARGE"
    assert peak < 16 * 1024 * 1024


@pytest.mark.parametrize(
    ("encoding", "data", "status", "code"),
    [
        ("br", b"x", 415, "UNSUPPORTED_ENCODING"),
        ("deflate", zlib.compress(b"{}"), 415, "UNSUPPORTED_ENCODING"),
        ("gzip", b"not gzip at all", 400, "MALFORMED_GZIP"),
        ("gzip", gzip.compress(b'{"a": 1}\n')[:-6], 400, "MALFORMED_GZIP"),
    ],
)
async def test_unbounded_or_broken_encodings_are_refused(
    gateway_client: ClientFactory,
    mobility: Contract,
    encoding: str,
    data: bytes,
    status: int,
    code: str,
) -> None:
    client = await gateway_client([mobility], MemoryWriter())
    response = await client.post(
        URL, data=data, headers=headers(TOKEN, NDJSON, **{"Content-Encoding": encoding})
    )
    assert response.status == status
    assert (await response.json())["error"] == code


async def test_slow_body_gets_408_and_the_connection_is_closed(
    gateway_client: ClientFactory, mobility: Contract
) -> None:
    client = await gateway_client([mobility], MemoryWriter(), body_timeout_s=0.5)
    assert client.port is not None
    head = headers(TOKEN, NDJSON, **{"Content-Length": "100000"})
    reader, writer = await open_request(client.port, URL, head, sized_event(0, 300))
    try:
        status, data = await read_response(reader, timeout_s=5.0)
    finally:
        writer.close()
    assert status == 408
    assert b"BODY_TIMEOUT" in data and b"Connection: close" in data


async def test_rate_limit_answers_429_with_retry_after_per_token(
    gateway_client: ClientFactory, examples: dict[str, Contract]
) -> None:
    from broker.ingest.fairuse import FairUseLimits

    client = await gateway_client(
        list(examples.values()),
        MemoryWriter(),
        fair_use=FairUseLimits(rate_events_per_s=1.0, burst_events=10, max_concurrent=8),
    )
    batch = b"\n".join(sized_event(i, 300) for i in range(10))
    response = await client.post(URL, data=batch, headers=headers(TOKEN))
    assert response.status == 200
    response = await client.post(URL, data=sized_event(99, 300), headers=headers(TOKEN))
    assert response.status == 429
    assert (await response.json())["error"] == "TOO_MANY_REQUESTS"
    assert int(response.headers["Retry-After"]) >= 1
    other = "/v1/contracts/paris-str/streams/activity/events"
    response = await client.post(other, data=b"{}", headers=headers(TOKENS["staybnb"]))
    assert response.status == 200  # another token has its own bucket


async def test_concurrency_limit_per_token(
    gateway_client: ClientFactory, mobility: Contract
) -> None:
    from broker.ingest.fairuse import FairUseLimits

    client = await gateway_client(
        [mobility], MemoryWriter(), fair_use=FairUseLimits(max_concurrent=1)
    )
    assert client.port is not None
    gateway = client.server.app[GATEWAY_KEY]
    head = headers(TOKEN, NDJSON, **{"Content-Length": "100000"})
    reader, writer = await open_request(client.port, URL, head, b"")
    try:
        await until(
            lambda: (
                gateway.fair_use._accounts.get("scootco") is not None
                and gateway.fair_use._accounts["scootco"].in_flight == 1
            ),
            5.0,
            "the slow request to be in progress",
        )
        response = await client.post(URL, data=sized_event(1, 300), headers=headers(TOKEN))
        assert response.status == 429 and response.headers["Retry-After"] == "1"
        health = await client.get("/healthz")  # never waits on a request in progress
        assert health.status == 200
    finally:
        writer.close()
    await until(lambda: gateway.fair_use._accounts["scootco"].in_flight == 0, 5.0, "the slot back")
    response = await client.post(URL, data=sized_event(2, 300), headers=headers(TOKEN))
    assert response.status == 200
