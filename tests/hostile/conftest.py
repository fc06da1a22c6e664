"""Fixtures for the hostile-provider tests: the gateway fixtures of ``tests/ingest``, events
sized to the byte, raw-socket requests (slow bodies) and an async bounded wait."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from typing import Any

from broker.deadline import Deadline, DeadlineExceeded
from tests.connectors.conftest import vehicle_event
from tests.ingest.conftest import (  # noqa: F401 - fixtures shared with the ingest tests
    NOW_MS,
    contract_copy,
    examples,
    gateway_client,
)

URL = "/v1/contracts/lyon-micromobility/streams/vehicle_events/events"
NDJSON = "application/x-ndjson"


def event(i: int, **overrides: Any) -> dict[str, Any]:
    """A valid vehicle event (gateway clock ``NOW_MS``), unique id per ``i``."""
    return vehicle_event(i, now_ms=NOW_MS, **overrides)


def sized_event(i: int, size: int) -> bytes:
    """A valid vehicle event whose compact JSON is exactly ``size`` bytes (trip_id pads)."""
    base = json.dumps(event(i, trip_id=""), separators=(",", ":")).encode()
    padded = json.dumps(event(i, trip_id="x" * (size - len(base))), separators=(",", ":"))
    assert len(padded) == size
    return padded.encode()


def headers(token: str, content_type: str = NDJSON, **extra: str) -> dict[str, str]:
    """Authorization and content type."""
    return {"Authorization": f"Bearer {token}", "Content-Type": content_type, **extra}


async def until(condition: Callable[[], bool], timeout_s: float, what: str) -> None:
    """Await ``condition`` with a deadline (the async twin of ``broker.deadline.wait_for``)."""
    deadline = Deadline(timeout_s)
    while not condition():
        if deadline.expired():
            msg = f"timed out after {timeout_s:g}s waiting for {what}"
            raise DeadlineExceeded(msg)
        await asyncio.sleep(0.01)


async def open_request(
    port: int, path: str, head: dict[str, str], body_start: bytes
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """Send a request line, headers and the first bytes of a body; keep the socket open."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    lines = [f"POST {path} HTTP/1.1", "Host: 127.0.0.1"] + [f"{k}: {v}" for k, v in head.items()]
    writer.write(("\r\n".join(lines) + "\r\n\r\n").encode() + body_start)
    await writer.drain()
    return reader, writer


async def read_response(reader: asyncio.StreamReader, timeout_s: float) -> tuple[int, bytes]:
    """Status and everything the server sent until it closed (bounded by ``timeout_s``)."""
    async with asyncio.timeout(timeout_s):
        data = await reader.read()  # until EOF: the server must close the connection
    status = int(data.split(b" ", 2)[1]) if data.startswith(b"HTTP/1.1") else 0
    return status, data
