"""Serve the gateway: TLS, the runner options its limits rely on, a connection cap, metrics apart.

``SERVER_OPTIONS`` must be given to whatever runs the app (``serve`` here, aiohttp's
``TestServer.start_server`` in tests): the access log names route templates only;
``auto_decompress=False`` leaves gzip to ``broker.ingest.body`` (bounded); a short
``lingering_time`` stops the server reading a refused (413, 408, 429) body after answering.

``ConnectionLimit`` wraps aiohttp's protocol factory: past ``max_connections`` open
connections a new one gets a fixed 503 with ``Retry-After`` and is closed, before any
byte of its request is read. With TLS (``tls_context``: TLS 1.2 at least) a connection is
counted once its handshake is done (the 503 goes encrypted); a handshake not done within
``HANDSHAKE_TIMEOUT_S`` is dropped by asyncio.

``/metrics`` is served by a second listener (``ServeConfig.metrics``, loopback by default),
never on the push API's address: providers reaching that one cannot read other tenants'
counters.
"""

from __future__ import annotations

import asyncio
import json
import logging
import signal
import ssl
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

from aiohttp import web

from broker.ingest.auth import GatewayConfigError
from broker.ingest.gateway import GatewayAccessLogger

_log = logging.getLogger(__name__)
LINGERING_S = 1.0
HANDSHAKE_TIMEOUT_S = 10.0
PLAINTEXT_WARNING = (
    "plaintext HTTP: tokens and data travel in clear; use --tls-cert/--tls-key or a TLS proxy"
)
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


def tls_context(cert: Path, key: Path) -> ssl.SSLContext:
    """A server context for a PEM certificate chain and its key, refusing below TLS 1.2."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        context.load_cert_chain(cert, key)
    except (OSError, ssl.SSLError) as exc:  # names the files, never their contents
        msg = f"cannot load the TLS certificate {cert} with key {key} ({type(exc).__name__})"
        raise GatewayConfigError(msg) from None
    return context


@dataclass(frozen=True)
class Listen:
    """An address to serve on (port 0: a free port, reported to ``serve``'s ``ready``)."""

    host: str
    port: int


@dataclass(frozen=True)
class ServeConfig:
    """Where the push API and ``/metrics`` listen, the connection cap and TLS."""

    ingest: Listen
    metrics: Listen | None = None  # None: no metrics listener
    max_connections: int = 512
    tls: ssl.SSLContext | None = None


class Ports(NamedTuple):
    """The ports actually bound (``metrics`` None without a metrics listener)."""

    ingest: int
    metrics: int | None


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
    config: ServeConfig,
    *,
    metrics: web.Application | None = None,
    ready: Callable[[Ports], None] | None = None,
) -> None:
    """Run ``app`` (and ``metrics`` on its own address) until SIGINT/SIGTERM or cancellation."""
    if config.tls is None:
        _log.warning(PLAINTEXT_WARNING)
    runner = web.AppRunner(app, handle_signals=False, **SERVER_OPTIONS)
    await runner.setup()
    loop = asyncio.get_running_loop()
    assert runner.server is not None  # noqa: S101 - set by setup()
    listener = await loop.create_server(
        ConnectionLimit(runner.server, config.max_connections),
        config.ingest.host,
        config.ingest.port,
        reuse_address=True,
        ssl=config.tls,
        ssl_handshake_timeout=HANDSHAKE_TIMEOUT_S if config.tls else None,
    )
    metrics_runner = await _serve_metrics(metrics, config.metrics)
    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        if ready is not None:
            metrics_port = metrics_runner.addresses[0][1] if metrics_runner else None
            ready(Ports(listener.sockets[0].getsockname()[1], metrics_port))
        await stop.wait()
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)
        listener.close()
        if metrics_runner is not None:
            await metrics_runner.cleanup()
        await runner.cleanup()


async def _serve_metrics(
    metrics: web.Application | None, where: Listen | None
) -> web.AppRunner | None:
    if metrics is None or where is None:
        return None
    runner = web.AppRunner(metrics, handle_signals=False, access_log=None)  # scraped every 15 s
    await runner.setup()
    await web.TCPSite(runner, where.host, where.port, reuse_address=True).start()
    return runner
