"""Where pull connectors put what they read: validated, then delivered until Kafka acknowledges.

A poller emits the records of one page or snapshot into an ``Outbox`` (the validator runs
once per record, through ``connectors.emit.Emitter``, so metrics and the duplicate filter
see each record once), then awaits ``deliver()``: it returns only when Kafka acknowledged the
whole batch, raw and DLQ records alike. While Kafka is away it waits (doubling, up to
``Backoff.max_s``), replaces its producer (a failed idempotent producer is not reused) and
sends the *same* validated batch again; it never gives up, so a poller never moves its
position (checkpoint, snapshot tracker) past records Kafka has not acknowledged. Records of
a batch that did reach Kafka before a failure are sent again: event ids make that harmless.
Cancelling ``deliver()`` (SIGTERM) is immediate; nothing undelivered is marked as sent.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from broker.kafka.reasons import Reason
from broker.kafka.writer import BatchWriter, KafkaUnavailable, OutRecord
from connectors.base import Headers, Outcome, Rejected
from connectors.emit import Emitter
from connectors.metrics import IngestMetrics
from connectors.poll import Clock
from connectors.validate import Router

_log = logging.getLogger(__name__)
CLOSE_TIMEOUT_S = 1.0  # a stop must be prompt: what is not acknowledged is read again


@dataclass(frozen=True)
class Backoff:
    """Waits between deliveries while Kafka is away: ``initial_s`` doubling up to ``max_s``."""

    initial_s: float = 0.5
    max_s: float = 30.0


class _PendingSink:
    """A ``Sink`` that keeps records until the outbox delivers them."""

    def __init__(self) -> None:
        self.records: list[OutRecord] = []

    def send(
        self,
        topic: str,
        key: bytes | None,
        value: bytes,
        headers: Headers,
        timestamp_ms: int | None = None,
    ) -> None:
        self.records.append(OutRecord(topic, key, value, list(headers)))

    def flush(self) -> None:
        """Nothing to do: ``Outbox.deliver`` sends."""


class Outbox:
    """Validates one contract's records and delivers them to Kafka, retrying until acked."""

    def __init__(
        self,
        router: Router,
        contract_id: str,
        *,
        writer: Callable[[], BatchWriter],
        connector: str,
        clock: Clock,
        metrics: IngestMetrics | None = None,
        backoff: Backoff | None = None,
    ) -> None:
        self._pending = _PendingSink()
        self.emitter = Emitter(
            router,
            contract_id,
            sink=self._pending,
            connector=connector,
            clock=clock.now_ms,
            metrics=metrics,
        )
        self._new_writer = writer
        self._writer: BatchWriter | None = None
        self.clock = clock
        self.backoff = backoff or Backoff()
        self.delivered = 0  # records Kafka acknowledged (raw and DLQ)
        self.failures = 0  # deliveries Kafka did not acknowledge (each retried)

    @property
    def contract_id(self) -> str:
        """The contract whose streams this outbox feeds."""
        return self.emitter.contract_id

    def emit(self, stream: str, record: Mapping[str, Any] | bytes, source: str) -> Outcome:
        """Validate one record and queue it for raw or the DLQ; the outcome says which."""
        return self.emitter.emit(stream, record, source)

    def reject(
        self, stream: str, record: Mapping[str, Any] | bytes, rejected: Rejected, source: str
    ) -> None:
        """Queue a record the connector itself refused for the DLQ."""
        self.emitter.reject(stream, record, rejected, source)

    @property
    def accepted(self) -> int:
        """Records validated into raw so far."""
        return sum(self.emitter.accepted.values())

    @property
    def rejected(self) -> Mapping[tuple[str, Reason], int]:
        """Rejections so far, by stream and reason."""
        return self.emitter.rejected

    async def deliver(self) -> None:
        """Return once Kafka acknowledged every queued record; wait and retry until then."""
        records, self._pending.records = self._pending.records, []
        wait = self.backoff.initial_s
        while records:
            writer = self._writer or self._new_writer()
            self._writer = writer
            try:
                await writer.write(records)
            except KafkaUnavailable as exc:
                self.failures += 1
                self._writer = None
                await _close(writer)
                _log.warning(
                    "Kafka did not acknowledge %d records (%s); sending them again in %.1fs",
                    len(records),
                    exc,
                    wait,
                )
                await self.clock.sleep(wait)
                wait = min(wait * 2, self.backoff.max_s)
                continue
            self.delivered += len(records)
            return

    async def close(self) -> None:
        """Close the producer (bounded: records still unacknowledged are read again later)."""
        writer, self._writer = self._writer, None
        if writer is not None:
            await _close(writer)


async def _close(writer: BatchWriter) -> None:
    try:
        await asyncio.wait_for(writer.close(), CLOSE_TIMEOUT_S)
    except Exception as exc:  # a broken producer may fail to close: it is dropped anyway
        _log.debug("producer did not close cleanly: %s", type(exc).__name__)
