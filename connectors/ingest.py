"""The Kafka ingest validator: ``ingest.<c>.<s>`` -> ``raw.<c>.<s>`` or ``dlq.<c>.<s>``.

Providers that speak Kafka write JSON or Confluent Avro to their ingest topics; this loop runs
every record through the same ``StreamValidator`` the HTTP gateway uses and writes the outcome.

Delivery is at least once and nothing is lost: a fetch's records are all validated, written
with ``broker.kafka.writer`` (acks=all, idempotent, one producer batch per partition), every
batch is acknowledged, and only then are the source offsets committed. A crash before the
commit replays the batch (the runtime's aggregation is idempotent per event id). A bad record
never stops the loop: it becomes a DLQ record, and even a bug of ours on one record becomes a
DLQ record with reason ``INTERNAL``. What does stop the loop is the cluster failing (missing
topics, sends not acknowledged): that raises ``ConnectorError`` without committing.

Heartbeats: every ``heartbeat_interval_s`` (and after each batch once due), the validator
writes a watermark heartbeat to every partition of every raw topic it serves
(``connectors.heartbeat``), so windows close on time in quiet hours.

Outages: once running, the validator rides out a broker outage. A batch that cannot be
written (or a client that fails) raises inside the loop; the validator then closes both
clients, forgets its uncommitted duplicate filters, backs off (1 s doubling to 10 s) and
starts over from the last committed offsets, until the cluster answers again: the batch is
replayed, never lost. ``health()`` says degraded meanwhile (and within 5 s of losing the
broker, from ``broker.kafka.probe``). At start, an unreachable cluster or a missing topic is
an error with its fix, not a wait (``docs/reliability.md``).

The data path is aiokafka (``getmany`` in, whole batches out) on an event loop of its own,
so ``run`` stays a blocking call driven by a ``threading.Event``. Logs and metrics carry
counts and reason codes only.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections import Counter as Tally
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from aiokafka import AIOKafkaConsumer
from aiokafka.codec import has_lz4
from aiokafka.errors import CommitFailedError, KafkaError
from prometheus_client import CollectorRegistry

from broker.kafka.clients import is_refusal
from broker.kafka.health import Health, combine
from broker.kafka.probe import KafkaProbe
from broker.kafka.reasons import Reason, Stage
from broker.kafka.settings import KafkaSettings, as_settings
from broker.kafka.writer import KafkaBatchWriter, KafkaUnavailable, OutRecord, ProducerSettings
from connectors.base import Accepted, ConnectorError, Rejected
from connectors.dedup import DuplicateFilter
from connectors.heartbeat import heartbeat_records
from connectors.metrics import IngestMetrics
from connectors.validate import (
    DEFAULT_FUTURE_SKEW,
    DEFAULT_MAX_BYTES,
    Router,
    StreamValidator,
    dlq_record,
)
from contracts.model import Contract

CONNECTOR = "kafka"
RETRY_FIRST_S = 1.0
RETRY_MAX_S = 10.0
MAX_FAILURES_WHILE_REACHABLE = 5
_log = logging.getLogger(__name__)
_INTERNAL = Rejected(Reason.INTERNAL, "", Stage.INTERNAL)


def wall_clock_ms() -> int:
    """Milliseconds since the epoch, now (the default clock of the validator)."""
    return time.time_ns() // 1_000_000


def _default_compression() -> str | None:
    # aiokafka compresses lz4 with the optional cramjam; without it, send uncompressed.
    return "lz4" if has_lz4() else None


@dataclass(frozen=True)
class IngestSettings:
    """Client and validation knobs of the ingest validator.

    ``linger_ms`` is 0 because whole producer batches are built per fetch: lingering would
    only delay the acknowledgement the commit waits for.
    """

    max_poll_records: int = 2000
    poll_timeout_ms: int = 200
    linger_ms: int = 0
    batch_size: int = 1024 * 1024
    compression: str | None = field(default_factory=_default_compression)
    flush_timeout_s: float = 60.0
    max_bytes: int = DEFAULT_MAX_BYTES
    future_skew: timedelta = DEFAULT_FUTURE_SKEW
    role: str = "validator"
    heartbeat_interval_s: float = 5.0
    """How often every raw partition gets a heartbeat (0: never)."""
    heartbeat_margin_ms: int = 2_000
    """Subtracted from a heartbeat's floor: another writer's records may still be in flight."""

    def producer(self, kafka: KafkaSettings) -> ProducerSettings:
        """The settings of the batch writer for raw and DLQ records."""
        return ProducerSettings(
            kafka,
            role=self.role,
            linger_ms=self.linger_ms,
            max_batch_size=self.batch_size,
            ack_timeout_s=self.flush_timeout_s,
            compression=self.compression,
        )


@dataclass
class IngestStats:
    """What a run did, in counts."""

    consumed: int = 0
    accepted: int = 0
    rejected: int = 0
    batches: int = 0
    reasons: Tally[Reason] = field(default_factory=Tally)
    first_record_at: float | None = None  # time.monotonic() of the first non-empty poll
    last_commit_at: float | None = None  # time.monotonic() of the last commit

    @property
    def events_per_s(self) -> float:
        """Records consumed per second between the first poll and the last commit."""
        if self.first_record_at is None or self.last_commit_at is None:
            return 0.0
        return self.consumed / max(self.last_commit_at - self.first_record_at, 1e-9)


class IngestValidator:
    """Consume every ingest topic of the contracts, validate, produce to raw or DLQ."""

    def __init__(
        self,
        contracts: Sequence[Contract],
        kafka: KafkaSettings | str,
        *,
        group_id: str,
        registry: CollectorRegistry,
        now_ms: Callable[[], int] = wall_clock_ms,
        settings: IngestSettings | None = None,
        metrics: IngestMetrics | None = None,
    ) -> None:
        self.settings = settings or IngestSettings()
        self.router = Router(
            contracts, max_bytes=self.settings.max_bytes, future_skew=self.settings.future_skew
        )
        self.kafka = as_settings(kafka)
        self.group_id = group_id
        self.metrics = metrics if metrics is not None else IngestMetrics(registry)
        self.stats = IngestStats()
        self._now_ms = now_ms
        self._last_heartbeat = float("-inf")
        self._by_topic: dict[str, StreamValidator] = {
            v.contract.topic_ingest(v.stream): v for v in self.router.validators.values()
        }
        self.started = False  # the first start succeeded
        self.failing: str | None = None  # why the loop is backing off, while it is
        self.outages = 0
        self._resumed_at = time.monotonic()
        self.probe: KafkaProbe | None = None

    def health(self) -> Health:
        """What ``/healthz`` says (``broker.kafka.health``)."""
        health = combine(self.probe, started=self.started, failing=self.failing)
        details = {"restarts": self.outages} if self.outages else {}
        return Health(health.status, health.kafka, health.reason, details)

    @property
    def ingest_topics(self) -> list[str]:
        """The topics this validator consumes, sorted."""
        return sorted(self._by_topic)

    def run(self, stop_event: threading.Event, *, max_idle_s: float | None = None) -> IngestStats:
        """Validate until ``stop_event`` is set (or nothing arrived for ``max_idle_s``).

        Blocks the calling thread on an event loop of its own. The batch in progress is
        always finished, acknowledged and committed before returning.
        """
        return asyncio.run(self.run_async(stop_event, max_idle_s=max_idle_s))

    async def run_async(
        self, stop_event: threading.Event, *, max_idle_s: float | None = None
    ) -> IngestStats:
        """``run`` for a caller that already has an event loop (same semantics)."""
        if self.probe is None and self.ingest_topics:
            self.probe = KafkaProbe(self.kafka, self.settings.role, self.ingest_topics[0]).start()
        delay = RETRY_FIRST_S
        while_reachable = 0
        try:
            while not stop_event.is_set():
                try:
                    await self._session(stop_event, max_idle_s)
                    break
                except (ConnectorError, KafkaError, KafkaUnavailable, OSError) as exc:
                    if time.monotonic() - self._resumed_at > 2 * RETRY_MAX_S:
                        delay, while_reachable = RETRY_FIRST_S, 0  # it ran a while: new outage
                    reachable = self.probe is not None and self.probe.state().reachable
                    while_reachable = while_reachable + 1 if reachable else 0
                    if not self.started or is_refusal(exc):
                        raise  # at start, or credentials/ACLs: the error and its fix
                    if while_reachable >= MAX_FAILURES_WHILE_REACHABLE:
                        raise  # Kafka answers, yet every batch fails: not an outage
                    self.outages += 1
                    self.failing = f"lost Kafka ({type(exc).__name__})"
                _log.warning(
                    "validator %s; starting over from the last commit in %.0f s",
                    self.failing,
                    delay,
                )
                await _sleep_unless(stop_event, delay)
                delay = min(2 * delay, RETRY_MAX_S)
        finally:
            if self.probe is not None:
                self.probe.stop()
                self.probe = None
        _log.info(
            "validator stopped: %d consumed, %d accepted, %d rejected in %d batches",
            self.stats.consumed,
            self.stats.accepted,
            self.stats.rejected,
            self.stats.batches,
        )
        return self.stats

    async def _session(self, stop_event: threading.Event, max_idle_s: float | None) -> None:
        """One life of the two clients: start, validate until stopped or failed, close."""
        consumer = self._consumer()
        writer = KafkaBatchWriter(self.settings.producer(self.kafka))
        try:
            await self._start(consumer, writer)
            if self.failing is not None:
                _log.info("validator resumed after %s", self.failing)
            self.started, self.failing = True, None
            self._resumed_at = time.monotonic()
            await self._loop(consumer, writer, stop_event, max_idle_s)
        except BaseException:
            self._forget_uncommitted()
            raise
        finally:
            await _quietly(writer.close())
            await _quietly(consumer.stop())  # no auto-commit: stopping commits nothing

    async def _start(self, consumer: AIOKafkaConsumer, writer: KafkaBatchWriter) -> None:
        try:
            await consumer.start()
            await writer.start()
        except (KafkaError, KafkaUnavailable, OSError) as exc:
            msg = f"cannot reach the Kafka cluster at {self.kafka.bootstrap} ({type(exc).__name__})"
            raise ConnectorError(msg) from exc
        await self._check_topics(consumer)
        consumer.subscribe(self.ingest_topics)

    async def _loop(
        self,
        consumer: AIOKafkaConsumer,
        writer: KafkaBatchWriter,
        stop_event: threading.Event,
        max_idle_s: float | None,
    ) -> None:
        idle_since = time.monotonic()
        while not stop_event.is_set():
            await self._heartbeat_if_due(writer)
            batch = await consumer.getmany(
                timeout_ms=self.settings.poll_timeout_ms, max_records=self.settings.max_poll_records
            )
            if not batch:
                if max_idle_s is not None and time.monotonic() - idle_since >= max_idle_s:
                    return
                continue
            if self.stats.first_record_at is None:
                self.stats.first_record_at = time.monotonic()
            out: list[OutRecord] = []
            for tp, records in batch.items():
                self._partition(out, tp.topic, tp.partition, records)
            await self._write(writer, out)
            await self._commit(consumer)
            self.stats.batches += 1
            idle_since = self.stats.last_commit_at = time.monotonic()

    def _partition(
        self, out: list[OutRecord], topic: str, partition: int, records: Iterable[Any]
    ) -> None:
        """Validate one partition's records, appending what to write to ``out``."""
        validator = self._by_topic[topic]
        raw_topic, dlq_topic = validator.raw_topic, validator.dlq_topic
        now_ms = self._now_ms()
        reasons: Tally[Reason] = Tally()
        received = 0
        for record in records:
            received += 1
            data = record.value if record.value is not None else b""
            outcome = _validate_one(validator, data, now_ms)
            if isinstance(outcome, Accepted):
                out.append(OutRecord(raw_topic, outcome.key, outcome.value, outcome.headers))
                continue
            reasons[outcome.reason] += 1
            _, value, headers = dlq_record(
                data,
                outcome,
                contract=validator.contract,
                stream=validator.stream.name,
                connector=CONNECTOR,
                source=f"{topic}/{partition}/{record.offset}",
                now_ms=now_ms,
            )
            out.append(OutRecord(dlq_topic, None, value, headers))
        self._count(validator, received, reasons)

    def _count(self, validator: StreamValidator, received: int, reasons: Tally[Reason]) -> None:
        rejected = sum(reasons.values())
        self.stats.consumed += received
        self.stats.rejected += rejected
        self.stats.accepted += received - rejected
        self.stats.reasons.update(reasons)
        self.metrics.add(
            validator.contract.id,
            validator.stream.name,
            CONNECTOR,
            received=received,
            rejected=reasons,
        )
        if rejected:
            summary = ", ".join(f"{r.value}={n}" for r, n in sorted(reasons.items()))
            _log.info(
                "%s: %d received, %d rejected (%s)",
                validator.contract.topic_ingest(validator.stream),
                received,
                rejected,
                summary,
            )

    async def _write(self, writer: KafkaBatchWriter, records: list[OutRecord]) -> None:
        """Write the batch; offsets are committed only if every record was acknowledged."""
        try:
            await writer.write(records)
        except KafkaUnavailable as exc:
            msg = f"{len(records)} records were not all acknowledged ({exc}); offsets not committed"
            raise ConnectorError(msg) from exc

    async def _heartbeat_if_due(self, writer: KafkaBatchWriter) -> None:
        """Every raw partition gets a heartbeat each ``heartbeat_interval_s`` (module doc)."""
        interval = self.settings.heartbeat_interval_s
        if interval <= 0 or time.monotonic() - self._last_heartbeat < interval:
            return
        records = heartbeat_records(
            self.router.validators.values(), self._now_ms(), self.settings.heartbeat_margin_ms
        )
        try:
            await writer.write(records)
        except (KafkaUnavailable, KafkaError) as exc:
            _log.warning(
                "heartbeats not written (%s); next try in %gs", type(exc).__name__, interval
            )
        self._last_heartbeat = time.monotonic()

    async def _commit(self, consumer: AIOKafkaConsumer) -> None:
        try:
            await consumer.commit()
        except CommitFailedError:
            # A rebalance took the partitions away: the new owner re-reads from the last
            # commit, so this batch may be written twice (at least once), never lost.
            _log.warning("offset commit failed after a rebalance; the batch will be replayed")

    def _consumer(self) -> AIOKafkaConsumer:
        return AIOKafkaConsumer(
            **self.kafka.aiokafka(self.settings.role),
            group_id=self.group_id,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            isolation_level="read_committed",
            max_poll_records=self.settings.max_poll_records,
            max_partition_fetch_bytes=4 * 1024 * 1024,
        )

    def _forget_uncommitted(self) -> None:
        """After a failed batch, start the duplicate filters afresh: the batch is replayed
        from the last commit and must not be rejected as a duplicate of itself."""
        for validator in self.router.validators.values():
            validator.dedup = DuplicateFilter(validator.stream.allowed_lateness)

    async def _check_topics(self, consumer: AIOKafkaConsumer) -> None:
        try:
            existing = await consumer.topics()
        except (KafkaError, OSError) as exc:
            msg = f"cannot list the topics of {self.kafka.bootstrap} ({type(exc).__name__})"
            raise ConnectorError(msg) from exc
        needed = [
            t
            for v in self._by_topic.values()
            for t in (v.contract.topic_ingest(v.stream), v.raw_topic, v.dlq_topic)
        ]
        missing = sorted(t for t in needed if t not in existing)
        if missing:
            msg = f"missing topics: {', '.join(missing)}; create them with `respublica apply`"
            raise ConnectorError(msg)


async def _sleep_unless(stop_event: threading.Event, seconds: float) -> None:
    """Sleep up to ``seconds``, returning early once ``stop_event`` is set."""
    deadline = time.monotonic() + seconds
    while not stop_event.is_set() and time.monotonic() < deadline:
        await asyncio.sleep(min(0.2, max(0.0, deadline - time.monotonic())))


async def _quietly(closing: Any) -> None:
    """Await a client's stop; a broken client has nothing left to flush."""
    try:
        await closing
    except (KafkaError, OSError) as exc:
        _log.debug("client stop failed: %s", type(exc).__name__)


def _validate_one(validator: StreamValidator, data: bytes, now_ms: int) -> Accepted | Rejected:
    """The outcome for one record; an unexpected failure is a rejection, never a crash."""
    try:
        return validator.validate(data, now_ms=now_ms, connector=CONNECTOR, source="")
    except Exception as exc:  # validate() already catches; this guards the format sniffing
        _log.error("internal error on one record: %s", type(exc).__name__)
        return _INTERNAL
