"""The gateway's Kafka writer that heals itself, and the truth that ``/healthz`` tells.

An idempotent producer that saw a fatal error (out-of-order sequence, fencing, a record too
large, a timed-out batch whose sequence numbers are now unknown) keeps failing every later
batch. ``HealingWriter`` therefore retires the producer after any failed write and builds a
fresh one for the next batch (the old one is closed in the background, bounded), so no good
batch fails because of an earlier bad one.

``KafkaHealth`` is what ``/healthz`` reads, never waiting on anything: degraded after a
failed write or a failed metadata check, ok again once a write or a check succeeds. A
background task checks metadata every ``probe_every_s`` (every second while degraded), so an
unreachable broker shows within seconds even without traffic.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from broker.kafka.writer import (
    BatchWriter,
    KafkaBatchWriter,
    KafkaUnavailable,
    OutRecord,
    close_within,
)

_log = logging.getLogger(__name__)
CLOSE_TIMEOUT_S = 10.0


@runtime_checkable
class MetadataCheck(Protocol):
    """A writer that can ask Kafka for cluster metadata (``/healthz`` without traffic)."""

    async def check(self, timeout_s: float) -> None:
        """Return when Kafka answered; raise ``KafkaUnavailable`` otherwise."""
        ...


class GatewayProducer(KafkaBatchWriter):
    """``KafkaBatchWriter`` that can also check that the cluster answers."""

    async def check(self, timeout_s: float) -> None:
        """Fetch cluster metadata through this writer's producer, within ``timeout_s``."""
        try:
            async with asyncio.timeout(timeout_s):
                producer = await self._started()
                await producer.client.fetch_all_metadata()
        except KafkaUnavailable:
            raise
        except Exception as exc:  # any client error: the cluster did not answer
            raise KafkaUnavailable(type(exc).__name__) from exc


@dataclass
class KafkaHealth:
    """What ``/healthz`` says: ``reason`` is None when healthy."""

    reason: str | None = None

    @property
    def ok(self) -> bool:
        """Whether the last write or check succeeded."""
        return self.reason is None

    def failed(self, reason: str) -> None:
        """A write or check failed."""
        if self.reason != reason:
            _log.warning("gateway degraded: %s", reason)
        self.reason = reason

    def succeeded(self) -> None:
        """A write or check succeeded."""
        if self.reason is not None:
            _log.info("gateway healthy again (Kafka answers)")
        self.reason = None


WriterFactory = Callable[[], BatchWriter]


class HealingWriter:
    """A ``BatchWriter`` that replaces its producer after a failed write."""

    def __init__(self, writer: BatchWriter | WriterFactory, health: KafkaHealth) -> None:
        # A writer instance (tests' in-memory writer) is kept; a factory is called anew.
        self._factory: WriterFactory | None = writer if callable(writer) else None
        self._writer: BatchWriter = writer() if callable(writer) else writer
        self.health = health
        self._retiring: set[asyncio.Task[None]] = set()
        if isinstance(self._writer, MetadataCheck):
            self.health.failed("KAFKA_NOT_CHECKED")  # until the first check or write

    @property
    def checkable(self) -> bool:
        """Whether the writer can check metadata (a real producer)."""
        return isinstance(self._writer, MetadataCheck)

    @property
    def connected(self) -> bool:
        """Whether the current producer's last contact with Kafka succeeded."""
        return self._writer.connected

    async def write(self, records: Sequence[OutRecord]) -> None:
        """Write through the current producer; after a failure, the next one is fresh."""
        writer = self._writer
        try:
            await writer.write(records)
        except KafkaUnavailable:
            self.health.failed("KAFKA_WRITE_FAILED")
            self._replace(writer)
            raise
        if records:
            self.health.succeeded()

    async def check(self, timeout_s: float) -> None:
        """A metadata check through the current producer, recorded in ``health``."""
        writer = self._writer
        if not isinstance(writer, MetadataCheck):
            return
        try:
            await writer.check(timeout_s)
        except KafkaUnavailable:
            self.health.failed("KAFKA_UNREACHABLE")
            return
        if self._writer is writer:
            self.health.succeeded()

    def _replace(self, failed: BatchWriter) -> None:
        if self._factory is None or self._writer is not failed:
            return  # a fixed writer, or another request already replaced it
        self._writer = self._factory()
        task = asyncio.get_running_loop().create_task(_retire(failed))
        self._retiring.add(task)
        task.add_done_callback(self._retiring.discard)

    async def close(self) -> None:
        """Close the current producer and wait for retired ones, each for at most
        ``CLOSE_TIMEOUT_S``: an idempotent producer retries a batch Kafka does not take (its
        topic deleted, the broker away) for ever, and its ``stop()`` waits for every batch.
        Such records were never acknowledged (their requests were answered 503)."""
        await _retire(self._writer)
        if self._retiring:
            await asyncio.gather(*self._retiring, return_exceptions=True)


async def _retire(writer: BatchWriter) -> None:
    await close_within(writer, CLOSE_TIMEOUT_S)


async def probe_forever(
    writer: HealingWriter, *, every_s: float, degraded_every_s: float, timeout_s: float
) -> None:
    """Check metadata periodically (more often while degraded) until cancelled."""
    while True:
        with contextlib.suppress(KafkaUnavailable):
            await writer.check(timeout_s)
        await asyncio.sleep(every_s if writer.health.ok else degraded_every_s)
