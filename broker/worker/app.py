"""The faust-streaming shell around an ``Engine``: life cycle, signals, ``/healthz``, ``/metrics``.

faust runs with ``enable_kafka=False``: it owns the process (graceful stop on SIGTERM/SIGINT,
logging, the aiohttp web server) while the engine's loops own the Kafka clients. faust's own
consumer cannot be given the checkpoint-first seek and per-view transactions the exactly-once
design needs (``docs/architecture.md``, "Why not faust agents"); its settings still follow
the project's rules (raw bytes, no ``faust.Record``, no pickle, ``store="memory://"``).
"""

from __future__ import annotations

import asyncio
import gc
import logging
import shutil
import tempfile
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import faust
from faust.app.base import BootStrategy
from mode import Service

from broker.worker.engine import Engine, now_utc
from broker.worker.heap import TRIM_EVERY_S, Heap

_log = logging.getLogger(__name__)
HEALTH_EVERY_S = 1.0
# The cyclic collector's thresholds for a worker process (CPython's default: 700, 10, 10).
# The worker holds many long-lived containers (open partials and their pseudonym sets, in the
# aggregators and the mergers) and allocates many more per batch, nearly all freed by
# reference counting: with the defaults, collections that find nothing to free cost a large
# share of the CPU (issue 17, docs/benchmarks.md). Cycles are still collected, less often.
GC_THRESHOLDS = (50_000, 20, 100)


class EngineService(Service):
    """Starts the engine's threads, watches them, stops them gracefully."""

    def __init__(self, engine: Engine, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.engine = engine
        self.heap = Heap()

    async def on_start(self) -> None:
        """Start the loops without blocking the event loop (startup reads Kafka)."""
        # Here rather than before faust starts: its SIGTERM handler is installed by now, so
        # the collection does not lengthen the startup window a signal would kill outright.
        tune_gc()
        self.heap.tune()  # large buffers mapped and returned whole (broker/worker/heap.py)
        await asyncio.get_running_loop().run_in_executor(None, self.engine.start)

    @Service.task
    async def _watch(self) -> None:
        # A loop that died takes the worker down (exit code 1): a supervisor restarts it,
        # and it resumes from its checkpoints, rather than limping on half-working.
        trimmed = time.monotonic()
        while not self.should_stop:
            failure = self.engine.failure()
            if failure is not None:
                await self.crash(failure)
                return
            if time.monotonic() - trimmed >= TRIM_EVERY_S:
                # Free heap pages back to the system: resident memory follows what the worker
                # holds, not what it once freed (issue 17; a few ms, the GIL released).
                self.heap.trim()
                trimmed = time.monotonic()
            await self.sleep(HEALTH_EVERY_S)

    async def on_stop(self) -> None:
        """Finish the batch, checkpoint, commit (threads joined off the event loop)."""
        await asyncio.get_running_loop().run_in_executor(None, self.engine.stop)


def build_app(engine: Engine, datadir: Path) -> faust.App:
    """A faust app serving the engine's health and metrics, running it as a service."""
    config = engine.config
    app = faust.App(
        f"respublica-worker-{config.group}",
        **config.kafka_settings.faust(),
        value_serializer="raw",
        key_serializer="raw",
        store="memory://",
        datadir=str(datadir),  # faust wants one; nothing is stored (no tables, memory store)
        topic_allow_declare=False,
        topic_disable_leader=True,
        web_enabled=config.web_port is not None or config.web_socket is not None,
        web_port=config.web_port or 6066,
        web_host=config.web_host,
        web_transport=f"unix://{config.web_socket}" if config.web_socket else "tcp://",
        web_in_thread=False,
        processing_guarantee="at_least_once",
    )
    app.boot_strategy = BootStrategy(app, enable_kafka=False)

    @app.service
    class _Engine(EngineService):  # faust instantiates services itself, with these kwargs
        def __init__(self, **kwargs: Any) -> None:
            super().__init__(engine, **kwargs)

    @app.page("/healthz")
    async def healthz(web: Any, request: Any) -> Any:
        # Readiness: 503 while starting, degraded (Kafka lost, a loop backing off) or failed.
        health = engine.health()
        body = {k: v for k, v in asdict(health).items() if v not in (None, {})}
        return web.json(body, status=200 if health.ok else 503)

    @app.page("/livez")
    async def livez(web: Any, request: Any) -> Any:
        # Liveness: an outage being waited out is alive; restarting cannot bring Kafka back.
        alive = engine.alive()
        return web.json({"status": "alive" if alive else "stuck"}, status=200 if alive else 503)

    @app.page("/metrics")
    async def metrics(web: Any, request: Any) -> Any:
        # Off the event loop: reading the oldest key waits for the key store's lock.
        await asyncio.get_running_loop().run_in_executor(None, engine.refresh_gauges, now_utc())
        return web.bytes(engine.metrics.exposition(), content_type="text/plain; version=0.0.4")

    return app


def tune_gc() -> None:
    """Set this process's collector for a worker: what exists now (modules, contracts,
    compiled views, the faust app) is never traversed again, and young objects are collected
    after ``GC_THRESHOLDS[0]`` net allocations instead of 700."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)


def run(engine: Engine, loglevel: str = "info") -> int:
    """Run until SIGTERM/SIGINT (or a loop failure); returns the exit code."""
    datadir = Path(tempfile.mkdtemp(prefix="respublica-worker-"))
    app = build_app(engine, datadir)
    worker = faust.Worker(app, loglevel=loglevel, quiet=True, redirect_stdouts=False)
    try:
        worker.execute_from_commandline()
    except SystemExit as exit_:
        return int(exit_.code or 0)
    finally:
        shutil.rmtree(datadir, ignore_errors=True)
    return 0
