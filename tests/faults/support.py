"""The fault suite's stack: a broker of its own (so it can be killed), the three long-running
components as real processes, providers that push over HTTP and Kafka and remember what was
acknowledged, and ``/healthz`` watchers that time the transitions.

Seeded: ``RESPUBLICA_FAULT_SEED`` replays a run (events, pacing, kill point); the seed is in
every assertion message. ``RESPUBLICA_OUTAGE_S`` sets the broker outage (``make test``: 20 s;
``make soak``: 90 s). ``RESPUBLICA_FAULT_REPORT`` names a JSON file that gets the figures.
"""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kafka import KafkaConsumer, KafkaProducer, TopicPartition

from broker.ingest.auth import hash_token
from broker.kafka.clients import abandon
from broker.kafka.internal import heartbeat_floor
from broker.kafka.local import free_port
from broker.kafka.serde import Schemas, decode
from broker.kafka.settings import as_settings
from contracts.model import Contract

TOKEN = "fault-suite-token"  # noqa: S105 - a test token
STREAM = "vehicle_events"


def seed() -> int:
    """The run's seed: ``RESPUBLICA_FAULT_SEED`` or a fresh one (printed on failure)."""
    value = os.environ.get("RESPUBLICA_FAULT_SEED")
    return int(value) if value else random.SystemRandom().randrange(1 << 30)


def outage_s(default: float = 20.0) -> float:
    """How long the broker stays down (``RESPUBLICA_OUTAGE_S``)."""
    return float(os.environ.get("RESPUBLICA_OUTAGE_S", default))


def report(name: str, figures: dict[str, Any]) -> None:
    """Add the figures of one fault to ``RESPUBLICA_FAULT_REPORT`` (if set) and print them."""
    print(f"{name}: {json.dumps(figures, sort_keys=True)}")
    target = os.environ.get("RESPUBLICA_FAULT_REPORT")
    if target:
        path = Path(target)
        data = json.loads(path.read_text()) if path.exists() else {}
        data[name] = figures
        path.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")


class Component:
    """A ``respublica`` subprocess with a health URL and a log file."""

    def __init__(self, name: str, args: list[str], health_url: str, log: Path) -> None:
        self.name = name
        self.args = [sys.executable, "-m", "broker.cli", *args]
        self.health_url = health_url
        self.log = log
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, env: dict[str, str]) -> None:
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(self.args, env=env, stdout=out, stderr=subprocess.STDOUT)

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def kill(self) -> None:
        """SIGKILL, no goodbye (the fault), and reap it."""
        assert self.proc is not None and self.alive(), f"{self.name} is not running"
        self.proc.kill()
        self.proc.wait(timeout=30)

    def health(self) -> tuple[int, dict[str, Any]]:
        """(status, body) of ``/healthz``; (0, {}) when it does not answer."""
        try:
            with urllib.request.urlopen(self.health_url, timeout=2) as response:  # noqa: S310
                return int(response.status), json.loads(response.read() or b"{}")
        except urllib.error.HTTPError as error:
            try:
                return int(error.code), json.loads(error.read() or b"{}")
            except ValueError:
                return int(error.code), {}
        except (OSError, ValueError):
            return 0, {}

    def stop(self, timeout_s: float = 60.0) -> int | None:
        """SIGTERM, wait; the exit code (killed if it does not stop)."""
        if self.proc is None:
            return None
        if self.alive():
            self.proc.terminate()
            try:
                self.proc.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode

    def tail(self, chars: int = 3000) -> str:
        return self.log.read_text(errors="replace")[-chars:] if self.log.exists() else ""


def components(bootstrap: str, contract: Contract, tmp: Path, group: str) -> list[Component]:
    """Gateway, validator and worker of ``contract`` on ``bootstrap``."""
    assert contract.source is not None
    source = str(contract.source)
    tokens = tmp / "tokens.yaml"
    tokens.write_text(
        f"providers:\n  - id: scootco\n    token_sha256: {hash_token(TOKEN)}\n"
        f"    contracts: [{contract.id}]\n"
    )
    common = ["--contracts", source, "--bootstrap", bootstrap, "--log-level", "info"]
    gw, validator, worker = free_port(), free_port(), free_port()
    return [
        Component(
            "gateway",
            ["gateway", "--tokens", str(tokens), "--port", str(gw), "--metrics-port", "0"] + common,
            f"http://127.0.0.1:{gw}/healthz",
            tmp / "gateway.log",
        ),
        Component(
            "validator",
            ["validator", "--metrics-port", str(validator), "--heartbeat-interval", "1"]
            + ["--group", f"{group}.validator", *common],
            f"http://127.0.0.1:{validator}/healthz",
            tmp / "validator.log",
        ),
        Component(
            "worker",
            ["worker", "--worker-id", "w1", "--group", group, "--web-port", str(worker)]
            + ["--checkpoint-interval", "0.5", *common],
            f"http://127.0.0.1:{worker}/healthz",
            tmp / "worker.log",
        ),
    ]


@dataclass
class Transitions:
    """When each component's ``/healthz`` first left 200 and came back, after a mark."""

    marks: dict[str, float] = field(default_factory=dict)
    seen: dict[str, list[tuple[float, int, str]]] = field(default_factory=dict)

    def first(self, name: str, after: str, ok: bool) -> float | None:
        """Seconds from mark ``after`` to the first sample of ``name`` with that outcome."""
        start = self.marks[after]
        for at, status, _ in self.seen.get(name, []):
            if at >= start and (status == 200) == ok:
                return round(at - start, 2)
        return None


@contextmanager
def watching(stack: list[Component], every_s: float = 0.25) -> Iterator[Transitions]:
    """Sample every component's ``/healthz`` on a thread while the block runs."""
    found = Transitions()
    stop = threading.Event()

    def run() -> None:
        while not stop.is_set():
            for component in stack:
                status, body = component.health()
                found.seen.setdefault(component.name, []).append(
                    (time.monotonic(), status, str(body.get("status", "")))
                )
            stop.wait(every_s)

    thread = threading.Thread(target=run, name="health-watch", daemon=True)
    thread.start()
    try:
        yield found
    finally:
        stop.set()
        thread.join(10)


class Providers:
    """Half the events over HTTP (the gateway), half over Kafka (the ingest topic), in chunks
    paced on a thread. Like a real provider, a chunk that was not acknowledged (503, timeout)
    is sent again a second later, whole: the copies that did get through make duplicates."""

    def __init__(
        self, gateway_url: str, bootstrap: str, contract: Contract, events: list[dict[str, Any]]
    ) -> None:
        self.route = f"{gateway_url}/v1/contracts/{contract.id}/streams/{STREAM}/events"
        self.topic = contract.topic_ingest(STREAM)
        self.events = events
        self.acked: set[str] = set()
        self.refused = 0  # chunks not acknowledged (each then sent again)
        self.sent = 0  # events sent at least once
        self._settings = as_settings(bootstrap).kafka_python("tests")
        self._producer: KafkaProducer | None = None
        self.pending: list[tuple[int, list[dict[str, Any]]]] = []
        self._thread = threading.Thread(target=self._run, name="providers", daemon=True)

    def start(self) -> Providers:
        self._thread.start()
        return self

    def _new_producer(self) -> KafkaProducer:
        return KafkaProducer(
            **self._settings,
            acks="all",
            enable_idempotence=True,
            linger_ms=5,
            delivery_timeout_ms=10_000,
            request_timeout_ms=5_000,
            max_block_ms=5_000,
        )

    def wait_done(self, timeout_s: float) -> None:
        self._thread.join(timeout_s)
        left = [("http" if i % 2 == 0 else "kafka") for i, _ in self.pending]
        assert not self._thread.is_alive(), f"the providers did not finish: {left}"
        assert not left, f"the providers stopped early: {left}"
        if self._producer is not None:
            self._producer.close(timeout=10)

    def _run(self) -> None:
        size = 50
        queue = self.pending
        queue += [
            (i, self.events[s : s + size]) for i, s in enumerate(range(0, len(self.events), size))
        ]
        while queue:
            index, chunk = queue[0]
            self.sent = max(self.sent, min(len(self.events), (index + 1) * size))
            ok = self._post(chunk) if index % 2 == 0 else self._produce(chunk)
            queue.pop(0)
            if ok:
                self.acked.update(e["event_id"] for e in chunk)
            else:
                self.refused += 1
                queue.append((index, chunk))
                time.sleep(1.0)  # a provider's retry delay (not a synchronisation)
            time.sleep(0.1)  # pacing: the load spans the outage

    def _post(self, chunk: list[dict[str, Any]]) -> bool:
        request = urllib.request.Request(  # noqa: S310 - a local gateway
            self.route,
            data=json.dumps(chunk).encode(),
            method="POST",
            headers={"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"},
        )
        try:
            with urllib.request.urlopen(request, timeout=30) as response:  # noqa: S310
                return bool(json.loads(response.read()).get("accepted") == len(chunk))
        except (OSError, ValueError):  # 503 while Kafka is down: not acknowledged
            return False

    def _produce(self, chunk: list[dict[str, Any]]) -> bool:
        try:
            if self._producer is None:
                self._producer = self._new_producer()  # fails while no broker answers
            producer = self._producer
            futures = [producer.send(self.topic, value=json.dumps(e).encode()) for e in chunk]
            for future in futures:
                future.get(timeout=20)
        except Exception:  # no metadata, buffer full, delivery timeout: not acknowledged
            # An idempotent producer whose batches expired may stay failed: start afresh,
            # as a provider's client library would after a fatal error.
            if self._producer is not None:
                abandon(self._producer, 1)  # close() raises on what it cannot flush
                self._producer = None
            return False
        return True


def raw_event_ids(bootstrap: str, contract: Contract) -> list[str]:
    """The event id of every record on the stream's raw topic (heartbeats left out)."""
    schemas = Schemas.from_contracts([contract])
    consumer = KafkaConsumer(
        **as_settings(bootstrap).kafka_python("tests"),
        group_id=None,
        enable_auto_commit=False,
        isolation_level="read_committed",
    )
    topic = contract.topic_raw(STREAM)
    tps = [TopicPartition(topic, p) for p in range(contract.stream(STREAM).partitions)]
    try:
        consumer.assign(tps)
        consumer.seek_to_beginning(*tps)
        ends = consumer.end_offsets(tps)
        ids: list[str] = []
        deadline = time.monotonic() + 60
        while any(consumer.position(tp) < ends[tp] for tp in tps):
            assert time.monotonic() < deadline, "reading raw timed out"
            for batch in consumer.poll(timeout_ms=500).values():
                for record in batch:
                    if heartbeat_floor(record.headers or ()) is not None or not record.value:
                        continue
                    ids.append(str(decode(record.value, schemas)[1]["event_id"]))
        return ids
    finally:
        consumer.close()
