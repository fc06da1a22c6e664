"""Past the connection limit, a new connection gets 503 with Retry-After and is closed."""

from __future__ import annotations

import asyncio

import pytest
from aiohttp import web

from broker.ingest.gateway import GatewayConfig, make_app
from broker.ingest.server import SERVER_OPTIONS, ConnectionLimit
from contracts import Contract
from tests.hostile.conftest import read_response, until
from tests.ingest.conftest import GRANTS, MemoryWriter

pytestmark = pytest.mark.unit


async def test_connection_limit(examples: dict[str, Contract]) -> None:
    config = GatewayConfig(contracts=(examples["lyon-micromobility"],), providers=GRANTS)
    runner = web.AppRunner(make_app(config, MemoryWriter()), **SERVER_OPTIONS)
    await runner.setup()
    assert runner.server is not None
    loop = asyncio.get_running_loop()
    listener = await loop.create_server(ConnectionLimit(runner.server, 2), "127.0.0.1", 0)
    port = listener.sockets[0].getsockname()[1]
    held = [await asyncio.open_connection("127.0.0.1", port) for _ in range(2)]
    try:
        await until(lambda: len(runner.server.connections) == 2, 5.0, "two open connections")
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        status, data = await read_response(reader, timeout_s=5.0)
        writer.close()
        assert status == 503 and b"Retry-After: 1" in data and b"TOO_MANY_CONNECTIONS" in data
        held.pop()[1].close()
        await until(lambda: len(runner.server.connections) == 1, 5.0, "a connection closed")
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        status, _ = await read_response(reader, timeout_s=5.0)
        writer.close()
        assert status == 200
    finally:
        for _, writer in held:
            writer.close()
        listener.close()
        await runner.cleanup()
