"""Path, host and cache tricks of a hostile analyst against respublica web, on an unreachable
broker (the server's principal may read one view, lyon-micromobility/availability; the rentals
contract is loaded but not readable): another contract's view is never reached, and the
server stops at once although its topic listing is still waiting for the broker."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

from broker.deadline import wait_for
from broker.kafka.settings import KafkaSettings
from broker.web.access import ViewRef
from broker.web.feed import ViewFeed
from broker.web.server import STATE, WebConfig, make_web_app
from tests.analysts.rows import T0, group, load_example, report

pytestmark = pytest.mark.unit


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
async def client(tmp_path: Path) -> Any:
    micro = load_example(tmp_path, "micromobility")
    rentals = load_example(tmp_path, "rentals")
    port = free_port()
    dead = KafkaSettings(bootstrap=f"127.0.0.1:{free_port()}")
    app = make_web_app(dead, [micro, rentals], WebConfig(port=port, catalogue_refresh_s=3600))
    c = TestClient(TestServer(app, host="127.0.0.1", port=port))
    await c.start_server()
    state = app[STATE]
    view = micro.view("availability")
    feed = ViewFeed(dead, micro, view)  # never started
    feed.book.add(group(T0, {"cell": "871f8d7a9ffffff"}, {"events": 14, "vehicles": 12}))
    feed.book.add(report(T0, 1, 3))
    state.views = {(micro.id, view.name): ViewRef(micro, view)}
    state.feeds = {(micro.id, view.name): feed}
    state.ready = True

    yield c
    state.feeds = {}
    await c.close()


OTHER = [
    "/api/views/paris-str/nights_by_district",
    "/api/views/paris-str%2Fnights_by_district",
    "/api/views/lyon-micromobility/..%2F..%2Fparis-str%2Fnights_by_district",
    "/api/views/lyon-micromobility/availability/../../paris-str/nights_by_district",
    "/api/views/LYON-MICROMOBILITY/availability",
    "/api/views/lyon-micromobility/AVAILABILITY",
    "/api/views/lyon\uff0dmicromobility/availability",
    "/api/views/lyon-micromobility/availability%00",
    "/api/views/lyon-micromobility/availability%20",
    "/exports/paris-str/nights_by_district.csv",
    "/exports/paris-str/nights_by_district.meta.json",
    "/exports/lyon-micromobility/availability.csv%2F..%2F..%2Fparis-str",
    "/views/paris-str/nights_by_district",
    "/audit/paris-str",
    "/api/audit/paris-str",
    "/audit/paris-str/report.html",
    "/static/../server.py",
    "/static/%2e%2e/server.py",
    "/static/..%2fserver.py",
    "/static/%2e%2e%2f%2e%2e%2fserver.py",
]


async def test_path_tricks_never_reach_another_view(client: Any) -> None:
    host = {"Host": f"127.0.0.1:{client.port}"}
    results = {}
    for path in OTHER:
        r = await client.get(path, headers=host, allow_redirects=False)
        body = await r.text()
        results[path] = (r.status, body[:80])
    for path, (status, body) in results.items():
        assert status in (400, 403, 404), (path, status, body)
        assert "nights" not in body and "paris" not in body.lower(), (path, body)


async def test_its_own_view_answers_and_is_not_cached(client: Any) -> None:
    host = {"Host": f"127.0.0.1:{client.port}"}
    r = await client.get(f"/api/views/lyon-micromobility/availability/windows/{T0}", headers=host)
    assert r.status == 200, await r.text()
    assert r.headers["Cache-Control"] == "no-store"


@pytest.mark.parametrize(
    "host",
    [
        "evil.example",
        "127.0.0.1",
        "127.0.0.1:{port}.",
        "LOCALHOST:{port}",
        "localhost.:{port}",
        "127.0.0.1:{port}@evil",
        "[::ffff:127.0.0.1]:{port}",
        "2130706433:{port}",
        "0:{port}",
    ],
)
async def test_only_its_own_host_names_answer_in_any_spelling(client: Any, host: str) -> None:
    value = host.format(port=client.port)
    r = await client.get("/api/views", headers={"Host": value})
    assert r.status in (200, 421)
    if r.status == 200:
        assert value.lower() in {f"localhost:{client.port}", f"127.0.0.1:{client.port}"}


def test_a_server_whose_broker_is_unreachable_stops_at_once(tmp_path: Path) -> None:
    # Its topic listing waits for the broker (kafka-python: half a minute); a SIGTERM must not.
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RESPUBLICA_", "KAFKA_"))}
    command = [sys.executable, "-m", "broker.cli", "web", "--port", str(port)]
    command += ["--bootstrap", f"127.0.0.1:{free_port()}"]
    server = subprocess.Popen(command, env=env, cwd=tmp_path)  # noqa: S603
    try:
        wait_for(lambda: _answers(f"http://127.0.0.1:{port}/healthz"), 60, "the server to answer")
        server.send_signal(signal.SIGTERM)
        started = time.monotonic()
        server.wait(timeout=60)
        assert time.monotonic() - started < 5
    finally:
        if server.poll() is None:
            server.kill()
            server.wait()


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2):  # noqa: S310 - loopback
            return True
    except urllib.error.HTTPError:
        return True  # answered (503 until the broker has)
    except OSError:
        return False
