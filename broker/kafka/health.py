"""``/healthz``, ``/livez`` and ``/metrics`` of the processes without a web framework of their own.

The validator and the pull connectors serve these on ``--metrics-host``/``--metrics-port``
(the worker serves the same paths from faust's web server, the gateway from aiohttp):

* ``GET /healthz``: 200 with ``{"status": "ok", ...}`` while the component does its work;
  503 with ``{"status": "starting" | "degraded", "reason": ...}`` otherwise — for a readiness
  probe and for people. Degraded within 5 s of losing Kafka (``broker.kafka.probe``), ok again
  once it answers and the component has resumed.
* ``GET /livez``: 200 while the process is alive and retrying, even through a broker outage;
  503 only when it is stuck for good — for a liveness probe, which must not restart a process
  that merely waits for Kafka (a restart cannot bring the broker back).
* ``GET /metrics``: the Prometheus text of the process's explicit registry.

Bodies carry states, type names and counts, never a value.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from broker.kafka.probe import KafkaProbe

_log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Health:
    """One answer of ``/healthz``."""

    status: str  # "ok", "starting" or "degraded"
    kafka: str  # "reachable", "unreachable" or "unknown"
    reason: str | None = None
    details: dict[str, Any] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        """Whether ``/healthz`` answers 200."""
        return self.status == "ok"


def combine(probe: KafkaProbe | None, *, started: bool, failing: str | None) -> Health:
    """The usual rule: starting until the work began; degraded while Kafka does not answer or
    the work is retrying (``failing`` says why); ok otherwise."""
    state = probe.state() if probe is not None else None
    kafka = "unknown" if state is None or state.checked is None else "reachable"
    if state is not None and state.checked is not None and not state.reachable:
        kafka = "unreachable"
    if not started:
        return Health("starting", kafka, failing or "not started yet")
    if kafka == "unreachable":
        return Health("degraded", kafka, state.reason if state is not None else None)
    if failing is not None:
        return Health("degraded", kafka, failing)
    return Health("ok", kafka)


MAX_CONNECTIONS = 32
REQUEST_TIMEOUT_S = 5.0


class _BoundedServer(ThreadingHTTPServer):
    """At most ``MAX_CONNECTIONS`` at once (a thread each); more are closed at once."""

    daemon_threads = True

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        self.slots = threading.BoundedSemaphore(MAX_CONNECTIONS)

    def process_request(self, request: Any, client_address: Any) -> None:
        if not self.slots.acquire(blocking=False):
            self.shutdown_request(request)
            return
        try:
            super().process_request(request, client_address)
        except BaseException:
            self.slots.release()
            raise

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self.slots.release()


class HealthServer:
    """A tiny threaded HTTP server for the three paths (module docstring): bounded in
    connections and in time per request, so idle sockets cannot pile up threads."""

    def __init__(
        self,
        host: str,
        port: int,
        registry: CollectorRegistry,
        health: Callable[[], Health],
        alive: Callable[[], bool] = lambda: True,
    ) -> None:
        handler = _handler(registry, health, alive)
        self.server = _BoundedServer((host, port), handler)
        self.port = int(self.server.server_address[1])
        self._thread = threading.Thread(
            target=self.server.serve_forever, name="respublica-health", daemon=True
        )

    def start(self) -> HealthServer:
        """Serve on a daemon thread (returns self)."""
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and release the port."""
        self.server.shutdown()
        self.server.server_close()


def _handler(
    registry: CollectorRegistry, health: Callable[[], Health], alive: Callable[[], bool]
) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        timeout = REQUEST_TIMEOUT_S  # a client that sends nothing is dropped

        def do_GET(self) -> None:  # noqa: N802 - http.server's name
            path = self.path.split("?", 1)[0]
            if path == "/metrics":
                self._send(200, generate_latest(registry), CONTENT_TYPE_LATEST)
            elif path == "/healthz":
                answer = health()
                body = {k: v for k, v in asdict(answer).items() if v not in (None, {})}
                self._send(200 if answer.ok else 503, _json(body), "application/json")
            elif path == "/livez":
                ok = alive()
                answer_ = _json({"status": "alive" if ok else "stuck"})
                self._send(200 if ok else 503, answer_, "application/json")
            else:
                self._send(404, _json({"error": "not found"}), "application/json")

        def _send(self, status: int, body: bytes, content_type: str) -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - base signature
            _log.debug("health request: %s", format % args)

    return Handler


def _json(body: Any) -> bytes:
    return (json.dumps(body, sort_keys=True) + "\n").encode()
