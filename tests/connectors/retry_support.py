"""Stand-ins for a gateway and a feed that fail on purpose, and the CLI run as a subprocess.

The stand-ins run in the test's event loop on 127.0.0.1; the CLI runs in a child process (so
a regression that would wait an hour is killed at a deadline, and the child's stderr shows its
retries as they happen).
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from broker.deadline import Deadline

# (request number from 1) -> None to accept, or (status, headers) to refuse with.
Plan = Callable[[int], tuple[int, dict[str, str]] | None]


def accept_all(_number: int) -> tuple[int, dict[str, str]] | None:
    return None


@dataclass
class StandInGateway:
    """Answers POSTed NDJSON batches as the plan says; keeps the lines of accepted batches."""

    plan: Plan = accept_all
    accepted: list[str] = field(default_factory=list)
    requests: list[tuple[float, int]] = field(default_factory=list)  # (monotonic, status)

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        refusal = self.plan(len(self.requests) + 1)
        status = refusal[0] if refusal else 200
        self.requests.append((time.monotonic(), status))
        if refusal:
            return web.json_response({"error": "NOT_NOW"}, status=status, headers=refusal[1])
        lines = [json.loads(line)["event_id"] for line in body.splitlines()]
        self.accepted.extend(lines)
        return web.json_response({"accepted": len(lines), "rejected": []})

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/v1/contracts/{contract}/streams/{stream}/events", self.handle)
        return app


@dataclass
class StandInFeed:
    """A GBFS ``free_bike_status`` feed (no bikes, ttl 0) that refuses as the plan says."""

    plan: Plan = accept_all
    requests: list[int] = field(default_factory=list)  # statuses answered

    async def handle(self, _request: web.Request) -> web.Response:
        refusal = self.plan(len(self.requests) + 1)
        status = refusal[0] if refusal else 200
        self.requests.append(status)
        if refusal:
            return web.Response(status=status, headers=refusal[1])
        doc = {"last_updated": int(time.time()), "ttl": 0, "version": "2.3", "data": {"bikes": []}}
        return web.json_response(doc)

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/free_bike_status.json", self.handle)
        return app


async def serve(app: web.Application, port: int) -> web.AppRunner:
    """Serve ``app`` on 127.0.0.1:``port``; clean up with ``await runner.cleanup()``."""
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    return runner


class Cli:
    """``python -m broker.cli ARGS`` in a child process, its stderr read as it comes."""

    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc
        self.err: list[str] = []

    @classmethod
    async def start(cls, *args: str) -> Cli:
        env = {k: v for k, v in os.environ.items() if k != "RESPUBLICA_CONTRACTS"}
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "broker.cli",
            *args,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env=env,
        )
        return cls(proc)

    async def wait_for_err(self, text: str, timeout_s: float = 30.0) -> None:
        """Read stderr until a line holds ``text``."""
        assert self.proc.stderr is not None
        deadline = Deadline(timeout_s)
        while not any(text in line for line in self.err):
            line = await asyncio.wait_for(self.proc.stderr.readline(), deadline.remaining())
            if not line:
                raise AssertionError(f"exited before printing {text!r}: {self.err}")
            self.err.append(line.decode())

    async def finish(self, timeout_s: float = 60.0) -> tuple[int, str]:
        """Wait for the exit; (exit code, all of stderr). Killed at the deadline."""
        try:
            _, rest = await asyncio.wait_for(self.proc.communicate(), timeout_s)
        except TimeoutError:
            self.proc.kill()
            await self.proc.wait()
            raise
        code = self.proc.returncode
        assert code is not None
        return code, "".join(self.err) + rest.decode()


async def run_cli(*args: str, timeout_s: float = 60.0) -> tuple[int, str]:
    """Run the CLI to its end: (exit code, stderr)."""
    return await (await Cli.start(*args)).finish(timeout_s)


def ndjson_file(path: Any, count: int, blank_every: int = 7) -> list[int]:
    """``count`` events ``e-0000``... with a blank line every ``blank_every`` lines; returns the
    line number (1-based) of each event."""
    numbers: list[int] = []
    lines: list[str] = []
    for i in range(count):
        if len(lines) % blank_every == blank_every - 1:
            lines.append("")
        lines.append(json.dumps({"event_id": f"e-{i:04d}"}))
        numbers.append(len(lines))
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return numbers
