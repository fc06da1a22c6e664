"""Is the cluster there? One cheap question a second, so ``/healthz`` can say the truth in time.

A component's data path alone notices an outage late: kafka-python's ``poll`` just returns
nothing while it reconnects, and a producer's batch waits ``delivery.timeout.ms``. The probe
asks the cluster for the end offset of one partition (``ListOffsets``, one small request on a
connection kept open) every ``every_s`` on a daemon thread of its own, with ``timeout_s`` to
answer: a broker killed or cut off fails the next question, so the state turns unreachable
within ``every_s + timeout_s`` (3 s by default; the issue's bound is 5 s). The probe never
blocks its readers and never raises: ``state()`` is a snapshot.

It authenticates like the component it serves (same settings, same role), so a probe that
works proves the component's credentials too; the partition asked about is one the component
may describe (a raw, ingest or keys topic of its contract).
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from typing import Any

from kafka import KafkaConsumer, TopicPartition
from kafka.errors import KafkaError

from broker.kafka.settings import KafkaSettings

_log = logging.getLogger(__name__)
PROBE_EVERY_S = 1.0
PROBE_TIMEOUT_S = 2.0


@dataclass(frozen=True)
class ProbeState:
    """What the last question said: ``reason`` is None while the cluster answers."""

    reachable: bool
    reason: str | None
    since: float  # time.monotonic() of the last change (or of the start)
    checked: float | None  # time.monotonic() of the last answer or failure; None: not yet


class KafkaProbe:
    """Ask the cluster one question every ``every_s`` (module docstring)."""

    def __init__(
        self,
        kafka: KafkaSettings,
        role: str,
        topic: str,
        *,
        every_s: float = PROBE_EVERY_S,
        timeout_s: float = PROBE_TIMEOUT_S,
    ) -> None:
        self.kafka = kafka
        self.role = role
        self.tp = TopicPartition(topic, 0)
        self.every_s = every_s
        self.timeout_s = timeout_s
        self._state = ProbeState(False, "not checked yet", time.monotonic(), None)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="respublica-probe", daemon=True)

    def start(self) -> KafkaProbe:
        """Start asking (returns self)."""
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop asking; returns within ``timeout_s`` or so."""
        self._stop.set()
        self._thread.join(self.timeout_s + self.every_s + 1.0)

    def state(self) -> ProbeState:
        """The last answer (never waits); unreachable when the last one is too old to trust
        (a probe thread stuck or gone must not keep saying "reachable")."""
        state = self._state
        stale = self.every_s + self.timeout_s + 1.0
        if state.checked is not None and time.monotonic() - state.checked > stale:
            return ProbeState(False, "kafka probe stalled", state.checked, state.checked)
        return state

    def _run(self) -> None:
        consumer: Any = None
        while not self._stop.is_set():
            started = time.monotonic()
            try:
                if consumer is None:
                    consumer = self._consumer()
                consumer.end_offsets([self.tp], timeout_ms=int(self.timeout_s * 1000))
                self._set(reachable=True, reason=None)
            except Exception as exc:  # whatever it is, the cluster did not answer
                # Values never reach a reason: a type name is all a log or /healthz needs.
                self._set(reachable=False, reason=f"kafka unreachable ({type(exc).__name__})")
            self._stop.wait(max(0.0, self.every_s - (time.monotonic() - started)))
        if consumer is not None:
            try:
                consumer.close(autocommit=False, timeout_ms=1000)
            except (KafkaError, OSError):
                pass

    def _consumer(self) -> KafkaConsumer:
        return KafkaConsumer(
            **self.kafka.kafka_python(self.role),
            enable_auto_commit=False,
            request_timeout_ms=max(1000, int(self.timeout_s * 1000)),
        )

    def _set(self, *, reachable: bool, reason: str | None) -> None:
        now = time.monotonic()
        before = self._state
        since = before.since if before.reachable == reachable else now
        if before.reachable != reachable and before.checked is not None:
            if reachable:
                _log.info("kafka reachable again after %.1f s", now - before.since)
            else:
                _log.warning("%s", reason)
        self._state = ProbeState(reachable, reason, since, now)
