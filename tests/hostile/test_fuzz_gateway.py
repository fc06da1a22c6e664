"""Fuzzing the gateway with sizes as well as values: it keeps answering, no good item is lost.

Each example is a batch of good events mixed with mutants (values of every JSON type, sizes
around the per-item cap, broken bytes on NDJSON lines), sent as NDJSON or a JSON array,
plain or gzip. A 200 must account for every item (accepted + rejected) and accept every good
one; an array whose element is not JSON is refused whole (400) and writes nothing.
"""

from __future__ import annotations

import asyncio
import gzip
import json
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from broker.ingest.gateway import GatewayConfig, make_app
from broker.ingest.server import SERVER_OPTIONS
from contracts import Contract, examples_dir, load_contracts
from tests.hostile.conftest import NDJSON, URL, event, headers, sized_event
from tests.ingest.conftest import GRANTS, NOW, NOW_MS, TOKENS, MemoryWriter

pytestmark = pytest.mark.unit
CAP = 2048
JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner),
    max_leaves=8,
)


@st.composite
def mutant(draw: Any, i: int) -> bytes:
    kind = draw(st.sampled_from(["value", "size", "bytes", "any"]))
    if kind == "value":
        field = draw(st.sampled_from(sorted(event(0))))
        return json.dumps(event(i, **{field: draw(JSON_VALUES)})).encode()
    if kind == "size":
        return sized_event(i, draw(st.integers(CAP - 2, CAP + 3000)))
    if kind == "bytes":
        # whitespace alone is no item at all (an empty array slot, a blank NDJSON line)
        blob = st.binary(min_size=1, max_size=CAP * 2).filter(lambda b: b.strip())
        return draw(blob).replace(b"\n", b" ")
    return json.dumps(draw(JSON_VALUES)).encode()


@st.composite
def batches(draw: Any) -> tuple[list[tuple[bytes, bool]], bool, bool]:
    count = draw(st.integers(1, 12))
    items = []
    for i in range(count):
        good = draw(st.booleans())
        items.append(
            (sized_event(i, draw(st.integers(300, CAP))), True)
            if good
            else (draw(mutant(1000 + i)), False)
        )
    return items, draw(st.booleans()), draw(st.booleans())


_CONTRACT: list[Contract] = []


def contract() -> Contract:
    if not _CONTRACT:
        found = {c.id: c for c in load_contracts([examples_dir()], now=NOW)}
        _CONTRACT.append(found["lyon-micromobility"])
    return _CONTRACT[0]


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(batches())
def test_gateway_fuzz(example: tuple[list[tuple[bytes, bool]], bool, bool]) -> None:
    asyncio.run(one(*example))


async def one(items: list[tuple[bytes, bool]], ndjson: bool, gzipped: bool) -> None:
    writer = MemoryWriter()
    config = GatewayConfig(contracts=(contract(),), providers=GRANTS, max_item_bytes=CAP)
    server = TestServer(make_app(config, writer, clock=lambda: NOW_MS), host="127.0.0.1")
    await server.start_server(**SERVER_OPTIONS)
    client: TestClient[Any, Any] = TestClient(server)
    await client.start_server()
    try:
        datas = [d for d, _ in items]
        body = b"\n".join(datas) if ndjson else b"[" + b",".join(datas) + b"]"
        extra = {"Content-Encoding": "gzip"} if gzipped else {}
        body = gzip.compress(body) if gzipped else body
        kind = NDJSON if ndjson else "application/json"
        response = await client.post(
            URL, data=body, headers=headers(TOKENS["scootco"], kind, **extra)
        )
        answer = await response.json()
        assert response.status in (200, 400), answer
        if response.status == 400:
            assert not ndjson and writer.records == []
        else:
            assert answer["accepted"] + len(answer["rejected"]) == len(items)
            rejected = {r["index"] for r in answer["rejected"]}
            lost = [i for i, (_, good) in enumerate(items) if good and i in rejected]
            assert lost == [], answer["rejected"]
        health = await client.get("/healthz")
        assert health.status == 200
    finally:
        await client.close()
