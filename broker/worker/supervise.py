"""Several worker processes under one command: ``respublica worker --processes N``.

Python runs one thread of bytecode at a time, so one worker process uses one core. The
``Supervisor`` starts N ``respublica worker`` children in the same consumer groups (the raw
partitions and the views spread over them as over N workers started by hand) and:

* restarts a child that exits, after a backoff (1 s doubling to 30 s, from 1 s again once
  it had run for a minute): a SIGKILLed child resumes from its checkpoints like any worker;
* stops every child on SIGTERM/SIGINT (each finishes its batch, checkpoints, commits) and
  waits for them, then exits with a code that says what happened (``ExitCode``);
* serves ``/healthz``, ``/livez`` and ``/metrics`` for all of them on one port. Each child
  serves its own on a Unix socket in a private directory; the parent asks them at request
  time. ``/metrics`` carries every child's families with a ``process`` label (the child's
  index, stable across restarts), plus the supervisor's own two families.

A child dies with its parent (``PR_SET_PDEATHSIG``): a SIGKILLed supervisor leaves no worker
behind. Design notes and the exit codes: ``docs/architecture.md``, "Several processes".
"""

from __future__ import annotations

import contextlib
import http.client
import json
import logging
import math
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from enum import IntEnum
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge
from prometheus_client.metrics_core import Metric
from prometheus_client.parser import text_string_to_metric_families

from broker.kafka.health import Health, HealthServer

_log = logging.getLogger(__name__)

RESTART_FIRST_S = 1.0
RESTART_MAX_S = 30.0
STABLE_AFTER_S = 60.0  # a child that ran this long starts its backoff over
# Exits before any child ever answered /healthz 200: a configuration the parent's own checks
# missed (the children would fail forever), so the supervisor gives up.
START_ATTEMPTS = 5
STOP_TIMEOUT_S = 90.0
TICK_S = 0.2
ASK_TIMEOUT_S = 3.0
SOCKET_PATH_MAX = 100  # sun_path holds 108 bytes on Linux
PR_SET_PDEATHSIG = 1
PROCESS_LABEL = "process"


class ExitCode(IntEnum):
    """What ``respublica worker --processes N`` exits with."""

    STOPPED = 0  # SIGTERM/SIGINT, and every child stopped cleanly
    FAILED = 1  # a startup error, or the children kept failing before any became healthy
    UNCLEAN_STOP = 3  # stopped on a signal, but a child exited non-zero or had to be killed


def available_cores() -> int:
    """Cores this process may use: its CPU affinity, capped by a cgroup CPU quota if any
    (a container limited to 2 CPUs on a 64-core host sees 64 in its affinity)."""
    if hasattr(os, "sched_getaffinity"):
        cores = len(os.sched_getaffinity(0))
    else:  # pragma: no cover - not Linux
        cores = os.cpu_count() or 1
    quota = cgroup_cpu_quota()
    if quota is not None:
        cores = min(cores, math.ceil(quota))
    return max(1, cores)


def cgroup_cpu_quota(root: Path = Path("/sys/fs/cgroup")) -> float | None:
    """CPUs granted by the cgroup quota (v2 ``cpu.max``, v1 ``cpu.cfs_quota_us``), or None."""
    try:
        quota, period = (root / "cpu.max").read_text().split()[:2]
        if quota == "max":
            return None
        return int(quota) / int(period)
    except (OSError, ValueError):
        pass
    try:
        quota_us = int((root / "cpu" / "cpu.cfs_quota_us").read_text())
        period_us = int((root / "cpu" / "cpu.cfs_period_us").read_text())
    except (OSError, ValueError):
        return None
    return quota_us / period_us if quota_us > 0 and period_us > 0 else None


def bind_to_parent(parent_pid: int) -> None:
    """In a child: die (SIGKILL) when the supervisor dies, even by SIGKILL.

    Linux's ``PR_SET_PDEATHSIG``; if the parent is already gone (it died before this ran),
    exit at once. Elsewhere a thread checks the parent every second.
    """
    try:
        import ctypes  # noqa: PLC0415 - only children need it

        libc = ctypes.CDLL(None, use_errno=True)
        if libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0) != 0:
            raise OSError(ctypes.get_errno(), "prctl")
    except (OSError, AttributeError):  # pragma: no cover - not Linux
        threading.Thread(target=_watch_parent, args=(parent_pid,), daemon=True).start()
    if os.getppid() != parent_pid:
        os._exit(ExitCode.FAILED)


def _watch_parent(parent_pid: int) -> None:  # pragma: no cover - not Linux
    while os.getppid() == parent_pid:
        time.sleep(1.0)
    os.kill(os.getpid(), signal.SIGKILL)


class _UnixHTTPConnection(http.client.HTTPConnection):
    """HTTP over a Unix socket (a child's web server)."""

    def __init__(self, path: Path, timeout: float) -> None:
        super().__init__("localhost", timeout=timeout)
        self.socket_path = path

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        try:
            sock.connect(str(self.socket_path))
        except OSError:
            sock.close()
            raise
        self.sock = sock


def ask(path: Path, route: str, timeout_s: float = ASK_TIMEOUT_S) -> tuple[int, bytes] | None:
    """GET ``route`` from the web server on Unix socket ``path``; None if it does not answer."""
    connection = _UnixHTTPConnection(path, timeout_s)
    try:
        connection.request("GET", route)
        response = connection.getresponse()
        return response.status, response.read()
    except (OSError, http.client.HTTPException):
        return None
    finally:
        connection.close()


@dataclass
class Slot:
    """One of the N places for a child: the process in it now, and its history."""

    index: int
    socket: Path
    proc: subprocess.Popen[bytes] | None = None
    started_at: float = 0.0
    restart_at: float | None = 0.0  # when to (re)start it; None: not to be started
    delay: float = RESTART_FIRST_S
    restarts: int = 0
    last_exit: int | None = None

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None


@dataclass
class ChildHealth:
    """What one child's ``/healthz`` said (or that it did not answer)."""

    index: int
    pid: int | None
    status: str  # the child's status, or "down" / "not answering"
    kafka: str = "unknown"
    reason: str | None = None


WORST = {"ok": 0, "starting": 1, "degraded": 2}


def combine_children(children: Sequence[ChildHealth], *, started: bool) -> Health:
    """The parent's ``/healthz``: ok when every child is; otherwise the worst of them, naming
    the first child that is not ok (``started``: some child was ever healthy, so a child
    that is down or silent now is degraded rather than starting)."""
    kafkas = {c.kafka for c in children}
    kafka = (
        "unreachable"
        if "unreachable" in kafkas
        else "reachable"
        if kafkas == {"reachable"}
        else "unknown"
    )
    details: dict[str, Any] = {
        "processes": {str(c.index): {"status": c.status, "pid": c.pid} for c in children}
    }
    status, reason = "ok", None
    for child in children:
        own = child.status if child.status in WORST else ("degraded" if started else "starting")
        if WORST[own] > WORST[status]:
            status = own
            reason = f"process {child.index}: {child.reason or child.status}"
    return Health(status, kafka, reason, details)


class Supervisor:
    """Runs ``processes`` children, each ``command(index, socket)``; see the module doc."""

    def __init__(
        self,
        command: Callable[[int, Path], list[str]],
        processes: int,
        *,
        env: dict[str, str] | None = None,
        stop_timeout_s: float = STOP_TIMEOUT_S,
        restart_first_s: float = RESTART_FIRST_S,
        registry: CollectorRegistry | None = None,
    ) -> None:
        self.command = command
        self.env = env
        self.stop_timeout_s = stop_timeout_s
        self.restart_first_s = restart_first_s
        self.stopping = threading.Event()
        self.gave_up: str | None = None
        self.ever_healthy = False
        self._start_failures = 0
        self._lock = threading.Lock()
        self._dir = _socket_dir()
        self.slots = [
            Slot(i, self._dir / f"{i}.sock", delay=restart_first_s) for i in range(processes)
        ]
        self.registry = registry or CollectorRegistry()
        self.running = Gauge(
            "respublica_worker_processes",
            "Worker processes running under this supervisor",
            registry=self.registry,
        )
        self.restarts = Counter(
            "respublica_worker_process_restarts",
            "Worker processes the supervisor restarted after they exited",
            [PROCESS_LABEL],
            registry=self.registry,
        )
        for slot in self.slots:
            self.restarts.labels(str(slot.index))
        self.registry.register(ChildMetrics(self))

    # -- the loop --------------------------------------------------------------------------

    def run(self) -> ExitCode:
        """Start the children, keep them running until ``stop()``, stop them; the exit code."""
        try:
            while not self.stopping.is_set() and self.gave_up is None:
                self.tick(time.monotonic())
                self.stopping.wait(TICK_S)
            clean = self.stop_children()
        finally:
            shutil.rmtree(self._dir, ignore_errors=True)
        if self.gave_up is not None:
            _log.error("worker processes: giving up: %s", self.gave_up)
            return ExitCode.FAILED
        return ExitCode.STOPPED if clean else ExitCode.UNCLEAN_STOP

    def stop(self) -> None:
        """Ask the loop to stop every child (from a signal handler or another thread)."""
        self.stopping.set()

    def tick(self, now: float) -> None:
        """Reap exited children, schedule their restart, start those whose time has come."""
        with self._lock:
            for slot in self.slots:
                if slot.proc is not None and slot.proc.poll() is not None:
                    self._exited(slot, now)
                if slot.proc is None and slot.restart_at is not None and now >= slot.restart_at:
                    self._start(slot, now)
            self.running.set(sum(slot.running for slot in self.slots))
        if not self.ever_healthy:
            self.ever_healthy = any(c.status == "ok" for c in self.children_health())

    def _exited(self, slot: Slot, now: float) -> None:
        assert slot.proc is not None  # noqa: S101 - checked by the caller
        code, pid = slot.proc.returncode, slot.proc.pid
        slot.proc, slot.last_exit = None, code
        if now - slot.started_at >= STABLE_AFTER_S:
            slot.delay = self.restart_first_s
        if not self.ever_healthy:
            self._start_failures += 1
            if self._start_failures >= START_ATTEMPTS:
                self.gave_up = (
                    f"worker processes exited {self._start_failures} times before any became "
                    f"healthy (last: process {slot.index}, exit code {code}); see their output"
                )
                slot.restart_at = None
                return
        slot.restart_at = now + slot.delay
        _log.warning(
            "worker process %d (pid %d) exited with code %s; restarting it in %.0f s",
            slot.index,
            pid,
            code,
            slot.delay,
        )
        slot.delay = min(2 * slot.delay, RESTART_MAX_S)

    def _start(self, slot: Slot, now: float) -> None:
        with contextlib.suppress(FileNotFoundError):
            slot.socket.unlink()  # a killed child's socket file
        if slot.started_at:
            slot.restarts += 1
            self.restarts.labels(str(slot.index)).inc()
        slot.proc = subprocess.Popen(  # noqa: S603 - our own command line
            self.command(slot.index, slot.socket),
            env=self.env,
            # Its own session: a terminal's Ctrl-C reaches the parent only, which stops the
            # children once, in order.
            start_new_session=True,
        )
        slot.started_at, slot.restart_at = now, None
        _log.info("worker process %d started (pid %d)", slot.index, slot.proc.pid)

    def stop_children(self) -> bool:
        """SIGTERM every child, wait ``stop_timeout_s``, SIGKILL the rest; all clean?"""
        with self._lock:
            for slot in self.slots:
                slot.restart_at = None
            procs = [(slot, slot.proc) for slot in self.slots if slot.proc is not None]
            for _, proc in procs:
                if proc.poll() is None:
                    proc.send_signal(signal.SIGTERM)
            deadline = time.monotonic() + self.stop_timeout_s
            clean = True
            for slot, proc in procs:
                try:
                    proc.wait(timeout=max(0.0, deadline - time.monotonic()))
                except subprocess.TimeoutExpired:
                    _log.error("worker process %d did not stop in time: killed", slot.index)
                    proc.kill()
                    proc.wait()
                    clean = False
                if proc.returncode != 0:
                    clean = False
                    _log.warning(
                        "worker process %d stopped with code %s", slot.index, proc.returncode
                    )
                slot.proc, slot.last_exit = None, proc.returncode
            self.running.set(0)
        return clean

    # -- what the web server says ------------------------------------------------------------

    def children_health(self) -> list[ChildHealth]:
        """Every child's ``/healthz``, asked now."""
        out = []
        for slot in self.slots:
            proc = slot.proc
            if proc is None or proc.poll() is not None:
                why = "restarting" if slot.restart_at is not None else "stopped"
                code = f" after exit code {slot.last_exit}" if slot.last_exit is not None else ""
                out.append(ChildHealth(slot.index, None, "down", reason=f"{why}{code}"))
                continue
            answer = ask(slot.socket, "/healthz")
            if answer is None:
                out.append(ChildHealth(slot.index, proc.pid, "not answering"))
                continue
            try:
                body = json.loads(answer[1])
                status, kafka = str(body["status"]), str(body.get("kafka", "unknown"))
            except (ValueError, KeyError, TypeError):
                status, kafka, body = "not answering", "unknown", {}
            reason = body.get("reason") if isinstance(body, dict) else None
            out.append(ChildHealth(slot.index, proc.pid, status, kafka, reason))
        return out

    def health(self) -> Health:
        """The parent's ``/healthz`` (``combine_children``)."""
        if self.gave_up is not None:
            return Health("degraded", "unknown", self.gave_up)
        children = self.children_health()
        self.ever_healthy = self.ever_healthy or any(c.status == "ok" for c in children)
        return combine_children(children, started=self.ever_healthy)

    def alive(self) -> bool:
        """The parent's ``/livez``: not given up, and no running child says it is stuck (it
        would exit and be restarted; a child that does not answer at all counts as stuck)."""
        if self.gave_up is not None:
            return False
        for slot in self.slots:
            proc = slot.proc
            if proc is None or proc.poll() is not None:
                continue  # being restarted: the supervisor's job, not the liveness probe's
            answer = ask(slot.socket, "/livez")
            # A child still starting has no web server yet: give it a minute.
            if answer is None and time.monotonic() - slot.started_at > STABLE_AFTER_S:
                return False
            if answer is not None and answer[0] != 200:
                return False
        return True

    def child_metrics(self) -> Iterator[tuple[int, str]]:
        """(index, ``/metrics`` text) of every running child that answers."""
        for slot in self.slots:
            if slot.running:
                answer = ask(slot.socket, "/metrics")
                if answer is not None and answer[0] == 200:
                    yield slot.index, answer[1].decode()


class ChildMetrics:
    """A collector: every child's metric families, each sample labelled ``process``."""

    def __init__(self, supervisor: Supervisor) -> None:
        self.supervisor = supervisor

    def collect(self) -> Iterator[Metric]:
        yield from merge_families(self.supervisor.child_metrics())


def merge_families(texts: Iterator[tuple[int, str]]) -> list[Metric]:
    """Families of several ``/metrics`` texts, one family per name, samples labelled with
    the index of the process they came from."""
    families: dict[str, Metric] = {}
    for index, text in texts:
        for family in text_string_to_metric_families(text):
            merged = families.get(family.name)
            if merged is None:
                merged = families[family.name] = Metric(
                    family.name, family.documentation, family.type, family.unit
                )
            merged.samples += [
                s._replace(labels={**s.labels, PROCESS_LABEL: str(index)}) for s in family.samples
            ]
    return list(families.values())


def _socket_dir() -> Path:
    """A private directory (mode 0700) for the children's sockets, short enough for them."""
    base = Path(tempfile.gettempdir())
    if len(str(base)) > SOCKET_PATH_MAX - 40:
        base = Path("/tmp")  # noqa: S108 - only when $TMPDIR is too long for a socket path
    return Path(tempfile.mkdtemp(prefix="respublica-workers-", dir=base))


@dataclass
class ServeOptions:
    """Where the parent serves ``/healthz``, ``/livez`` and ``/metrics`` (port 0: nowhere)."""

    host: str = "127.0.0.1"
    port: int = 6066
    signals: tuple[int, ...] = field(default=(signal.SIGTERM, signal.SIGINT))


def supervise(supervisor: Supervisor, serve: ServeOptions) -> ExitCode:
    """Run ``supervisor`` in this (main) thread until SIGTERM/SIGINT; returns the exit code."""
    for signum in serve.signals:
        signal.signal(signum, lambda *_: supervisor.stop())
    server = None
    if serve.port:
        server = HealthServer(
            serve.host, serve.port, supervisor.registry, supervisor.health, supervisor.alive
        ).start()
    _log.info(
        "supervising %d worker processes%s",
        len(supervisor.slots),
        f"; /healthz and /metrics on {serve.host}:{serve.port}" if server else "",
    )
    try:
        return supervisor.run()
    finally:
        if server is not None:
            server.stop()
