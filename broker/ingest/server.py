"""Serve the gateway application: runner options that its limits rely on, and a connection cap.

``SERVER_OPTIONS`` must be given to whatever runs the app (``serve`` here, aiohttp's
``TestServer.start_server`` in tests): the access log names route templates only;
``auto_decompress=False`` leaves gzip to ``broker.ingest.body`` (bounded); a short
``lingering_time`` stops the server reading a refused (413, 408, 429) body after answering.

``ConnectionLimit`` wraps aiohttp's protocol factory: past ``max_connections`` open
connections a new one gets a fixed 503 with ``Retry-After`` and is closed, before any
byte of its request is read.
"""

from __future__ import annotations

import asyncio
import json
import signal
from collections.abc import Callable
from typing import Any

from aiohttp import web

from broker.ingest.gateway import GatewayAccessLogger

LINGERING_S = 1.0
SERVER_OPTIONS: dict[str, Any] = {
    "access_log_class": GatewayAccessLogger,
    "auto_decompress": False,
    "lingering_time": LINGERING_S,
}
_BUSY_BODY = json.dumps(
    {"error": "TOO_MANY_CONNECTIONS", "message": "the gateway is at its connection limit"}
).encode()
_BUSY = (
    b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\n"
    b"Retry-After: 1\r\nConnection: close\r\nContent-Length: "
    + str(len(_BUSY_BODY)).encode()
    + b"\r\n\r\n"
    + _BUSY_BODY
)


class _Busy(asyncio.Protocol):
    """Answers 503 and hangs up: the connection over the limit never reaches aiohttp."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)  # noqa: S101 - TCP server
        transport.write(_BUSY)
        transport.close()


class ConnectionLimit:
    """An asyncio protocol factory: aiohttp's handlers up to ``limit`` open connections."""

    def __init__(self, server: web.Server, limit: int) -> None:
        self.server, self.limit = server, limit

    def __call__(self) -> asyncio.BaseProtocol:
        """A request handler, or ``_Busy`` past the limit (0: no limit)."""
        if self.limit and len(self.server.connections) >= self.limit:
            return _Busy()
        return self.server()


async def serve(
    app: web.Application,
    host: str,
    port: int,
    *,
    max_connections: int,
    ready: Callable[[int], None] | None = None,
) -> None:
    """Run ``app`` on ``host:port`` until SIGINT/SIGTERM (or cancellation), then clean up."""
    runner = web.AppRunner(app, handle_signals=False, **SERVER_OPTIONS)
    await runner.setup()
    loop = asyncio.get_running_loop()
    assert runner.server is not None  # noqa: S101 - set by setup()
    listener = await loop.create_server(
        ConnectionLimit(runner.server, max_connections), host, port, reuse_address=True
    )
    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        if ready is not None:
            ready(listener.sockets[0].getsockname()[1])
        await stop.wait()
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)
        listener.close()
        await runner.cleanup()
