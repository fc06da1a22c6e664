"""Helpers of the web tests: releases on public topics, a ``respublica web`` subprocess, and
headless Chromium (Debian's ``chromium`` and ``chromium-driver``) through selenium."""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import io
import json
import os
import shutil
import subprocess
import sys
import threading
import urllib.error
import urllib.request
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from kafka import KafkaProducer

from broker.deadline import Deadline, wait_for
from broker.kafka.local import free_port
from broker.kafka.publish import ReleaseEncoder
from broker.kafka.settings import KafkaSettings, as_settings
from broker.web.server import STATE, WebConfig, WebState, make_web_app
from contracts.model import Contract
from policies.base import Release

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = ("/usr/bin/chromium", "/usr/bin/chromium-browser")
CHROMEDRIVER = "/usr/bin/chromedriver"
MISSING_BROWSER = (
    "headless Chromium is missing: apt-get install chromium chromium-driver (.ci/run installs them)"
)


def publish(bootstrap: str, contract: Contract, view: str, releases: Iterable[Release]) -> int:
    """Write the records of ``releases`` to the view's public topic, as the worker would."""
    encoder = ReleaseEncoder(contract, contract.view(view))
    producer = KafkaProducer(**as_settings(bootstrap).kafka_python("tests"), acks="all")
    sent = 0
    try:
        for release in releases:
            for record in encoder.records(release):
                producer.send(
                    record.topic, key=record.key, value=record.value, headers=record.headers
                )
                sent += 1
        producer.flush(timeout=30)
    finally:
        producer.close(timeout=10)
    return sent


class WebServer:
    """A ``respublica web`` subprocess as one principal (its client config file)."""

    def __init__(
        self,
        config: Path,
        contracts: list[Path],
        port: int,
        log: Path,
        extra: list[str] | None = None,
    ) -> None:
        self.port = port
        self.log_path = log
        self.args = [
            sys.executable,
            "-m",
            "broker.cli",
            "web",
            "--kafka-config",
            str(config),
            "--port",
            str(port),
            "--log-level",
            "warning",
            *[a for path in contracts for a in ("--contracts", str(path))],
            *(extra or []),
        ]
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith("RESPUBLICA_KAFKA_")}
        env.pop("RESPUBLICA_KAFKA_CONFIG", None)  # only the analyst's own file
        env["PYTHONUNBUFFERED"] = "1"
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                self.args, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT
            )
        wait_for(self.ready, 60, f"respublica web on port {self.port}", every_s=0.2)

    def ready(self) -> bool:
        assert self.proc is not None
        assert self.proc.poll() is None, self.log_tail()
        try:
            with urllib.request.urlopen(f"{self.url}/healthz", timeout=2) as answer:  # noqa: S310
                return bool(answer.status == 200)
        except (OSError, urllib.error.URLError):
            return False

    def get(self, path: str) -> tuple[int, bytes]:
        """Status and body of a GET (errors included)."""
        try:
            with urllib.request.urlopen(f"{self.url}{path}", timeout=30) as answer:  # noqa: S310
                return int(answer.status), answer.read()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read()

    def json(self, path: str) -> Any:
        status, body = self.get(path)
        assert status == 200, (path, status, body[:200])
        return json.loads(body)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def log_tail(self, chars: int = 3000) -> str:
        return self.log_path.read_text(errors="replace")[-chars:]


def chromium_binary() -> str | None:
    """Debian's chromium, if installed."""
    found = next((path for path in CHROMIUM if Path(path).exists()), None)
    return found or shutil.which("chromium")


def browser(width: int = 1400, height: int = 1100) -> Any:
    """Headless Chromium driven by Debian's chromedriver (selenium never downloads one).

    Without the browser the test is skipped on a developer's machine and fails in CI.
    """
    binary = chromium_binary()
    driver_path = CHROMEDRIVER if Path(CHROMEDRIVER).exists() else shutil.which("chromedriver")
    if binary is None or driver_path is None:
        if os.environ.get("CI"):
            pytest.fail(MISSING_BROWSER)
        pytest.skip(MISSING_BROWSER)
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = binary
    for flag in (
        "--headless=new",
        "--no-sandbox",  # CI runs as root
        "--disable-dev-shm-usage",
        "--disable-gpu",
        "--no-first-run",
        "--disable-extensions",
        "--lang=en-GB",
        f"--window-size={width},{height}",
    ):
        options.add_argument(flag)
    return webdriver.Chrome(options=options, service=Service(executable_path=driver_path))


class TileServer:
    """A local raster tile server: one small PNG for every ``/z/x/y.png``; counts requests."""

    def __init__(self) -> None:
        from PIL import Image

        picture = io.BytesIO()
        Image.new("RGB", (256, 256), (200, 230, 200)).save(picture, "PNG")
        self.png = picture.getvalue()
        self.paths: list[str] = []
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - the http.server API
                owner.paths.append(self.path)
                self.send_response(200)
                self.send_header("Content-Type", "image/png")
                self.send_header("Content-Length", str(len(owner.png)))
                self.end_headers()
                self.wfile.write(owner.png)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def template(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/{{z}}/{{x}}/{{y}}.png"

    def __enter__(self) -> TileServer:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(5)


async def until(
    condition: Callable[[], Awaitable[bool] | bool], timeout_s: float, what: str
) -> None:
    """Await ``condition`` (a plain or async predicate) until true, or fail at the deadline."""
    deadline = Deadline(timeout_s)
    while True:
        outcome = condition()
        if await outcome if inspect.isawaitable(outcome) else outcome:
            return
        if deadline.expired():
            pytest.fail(f"timed out after {timeout_s:.0f}s waiting for {what}")
        await asyncio.sleep(0.05)


@contextlib.asynccontextmanager
async def web_client(
    kafka: KafkaSettings, contracts: list[Contract], **config: Any
) -> AsyncIterator[tuple[TestClient[web.Request, web.Application], WebState]]:
    """``respublica web``'s application on 127.0.0.1 (a free port its config names), and a
    client of it; the state is the application's own."""
    port = free_port()
    app = make_web_app(kafka, contracts, WebConfig(port=port, **config))
    client = TestClient(TestServer(app, host="127.0.0.1", port=port))
    await client.start_server()
    try:
        yield client, app[STATE]
    finally:
        await client.close()
