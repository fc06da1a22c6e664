"""Stand-ins for the supervisor's tests: a child that serves the three paths on a Unix socket,
and a parent that supervises such children (no Kafka: what is tested is the supervision).

    python -m tests.worker.supervise_stub child --socket S --parent-pid P --mode ok|fail|stubborn
    python -m tests.worker.supervise_stub parent --port P --modes ok,ok [--restart-s 0.2]

``ok`` serves 200 and stops on SIGTERM with exit code 0; ``fail`` exits 3 at once;
``stubborn`` ignores SIGTERM.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socketserver
import sys
import threading
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any

from broker.worker.supervise import ServeOptions, Supervisor, bind_to_parent, supervise

METRICS = (
    "# HELP respublica_stub_events_total Events seen\n"
    "# TYPE respublica_stub_events_total counter\n"
    'respublica_stub_events_total{contract="c"} 5.0\n'
    "# HELP respublica_stub_held Partitions held\n"
    "# TYPE respublica_stub_held gauge\n"
    "respublica_stub_held 2.0\n"
)


class _Handler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:  # noqa: N802 - http.server's name
        if self.path == "/metrics":
            self._send(200, METRICS.encode(), "text/plain")
        elif self.path in ("/healthz", "/livez"):
            body = {"status": "ok", "kafka": "reachable"} if self.path == "/healthz" else {}
            self._send(200, json.dumps(body).encode(), "application/json")
        else:
            self._send(404, b"{}", "application/json")

    def _send(self, status: int, body: bytes, kind: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def address_string(self) -> str:
        return "unix"

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - base signature
        pass


def child(socket_path: Path, parent_pid: int, mode: str) -> int:
    bind_to_parent(parent_pid)
    if mode == "fail":
        return 3
    stop = threading.Event()
    if mode == "stubborn":
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
    else:
        signal.signal(signal.SIGTERM, lambda *_: stop.set())
    server = socketserver.ThreadingUnixStreamServer(str(socket_path), _Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    stop.wait()
    server.shutdown()
    return 0


def parent(port: int, modes: list[str], restart_s: float, stop_timeout_s: float) -> int:
    pid = os.getpid()

    def command(index: int, path: Path) -> list[str]:
        return [
            sys.executable,
            "-m",
            "tests.worker.supervise_stub",
            "child",
            "--socket",
            str(path),
            "--parent-pid",
            str(pid),
            "--mode",
            modes[index],
        ]

    supervisor = Supervisor(
        command, len(modes), restart_first_s=restart_s, stop_timeout_s=stop_timeout_s
    )
    return int(supervise(supervisor, ServeOptions("127.0.0.1", port)))


def main() -> int:
    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers(dest="role", required=True)
    c = sub.add_parser("child")
    c.add_argument("--socket", type=Path, required=True)
    c.add_argument("--parent-pid", type=int, required=True)
    c.add_argument("--mode", default="ok")
    p = sub.add_parser("parent")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--modes", default="ok,ok")
    p.add_argument("--restart-s", type=float, default=0.2)
    p.add_argument("--stop-timeout-s", type=float, default=30.0)
    args = parser.parse_args()
    if args.role == "child":
        return child(args.socket, args.parent_pid, args.mode)
    return parent(args.port, args.modes.split(","), args.restart_s, args.stop_timeout_s)


if __name__ == "__main__":
    sys.exit(main())
