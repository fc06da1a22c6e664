"""The Kafka ingest validator: ``ingest.<c>.<s>`` -> ``raw.<c>.<s>`` or ``dlq.<c>.<s>``.

Providers that speak Kafka write JSON or Confluent Avro to their ingest topics; this loop runs
every record through the same ``StreamValidator`` the HTTP gateway uses and writes the outcome.

Delivery is at least once and nothing is lost: a poll's records are all sent, the producer is
flushed, every send is checked, and only then are the source offsets committed. A crash before
the commit replays the batch (the runtime's aggregation is idempotent per event id). A bad
record never stops the loop: it becomes a DLQ record, and even a bug of ours on one record
becomes a DLQ record with reason ``INTERNAL``. What does stop the loop is the cluster failing
(missing topics, sends not acknowledged): that raises ``ConnectorError`` without committing.

Logs and metrics carry counts and reason codes only.
"""

from __future__ import annotations

import importlib.util
import logging
import threading
import time
from collections import Counter as Tally
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from kafka import KafkaConsumer, KafkaProducer
from kafka.errors import CommitFailedError, KafkaError
from kafka.partitioner.default import murmur2
from prometheus_client import CollectorRegistry

from connectors.base import Accepted, ConnectorError, Rejected
from connectors.dedup import DuplicateFilter
from connectors.metrics import IngestMetrics
from connectors.reasons import Reason, Stage
from connectors.validate import (
    DEFAULT_FUTURE_SKEW,
    DEFAULT_MAX_BYTES,
    Router,
    StreamValidator,
    dlq_record,
)
from contracts.model import Contract

CONNECTOR = "kafka"
_log = logging.getLogger(__name__)
_INTERNAL = Rejected(Reason.INTERNAL, "", Stage.INTERNAL)


def wall_clock_ms() -> int:
    """Milliseconds since the epoch, now (the default clock of the validator)."""
    return time.time_ns() // 1_000_000


def _default_compression() -> str | None:
    # lz4 is optional in kafka-python; without the module, send uncompressed rather than fail.
    return "lz4" if importlib.util.find_spec("lz4") is not None else None


# Without the `crc32c` C extension kafka-python checks CRCs in pure Python, which costs more
# than the whole validation. The broker verifies batch CRCs on append, so the consumer-side
# check only guards the disk and loopback path: skip it then (producing still computes CRCs).
_HAVE_CRC32C = importlib.util.find_spec("crc32c") is not None


class KeyPartitioner:
    """kafka-python's (and Java's) default key partitioning, memoised per key.

    Subjects repeat (a fleet, a set of listings), and murmur2 in pure Python costs more per
    record than a dict lookup; the cache is cleared when it grows past ``max_keys``.
    """

    def __init__(self, partitions: Iterable[int] | None, *, max_keys: int = 100_000) -> None:
        self._partitions = sorted(partitions or ())
        if not self._partitions:
            msg = "topic has no partitions in the cluster metadata"
            raise ConnectorError(msg)
        self._cache: dict[bytes, int] = {}
        self._max_keys = max_keys

    def __call__(self, key: bytes) -> int:
        partition = self._cache.get(key)
        if partition is None:
            if len(self._cache) >= self._max_keys:
                self._cache.clear()
            index = (murmur2(key) & 0x7FFFFFFF) % len(self._partitions)
            partition = self._cache[key] = self._partitions[index]
        return partition


@dataclass(frozen=True)
class IngestSettings:
    """Client and validation knobs of the ingest validator."""

    max_poll_records: int = 2000
    poll_timeout_ms: int = 200
    linger_ms: int = 20
    batch_size: int = 256 * 1024
    compression: str | None = field(default_factory=_default_compression)
    flush_timeout_s: float = 60.0
    max_bytes: int = DEFAULT_MAX_BYTES
    future_skew: timedelta = DEFAULT_FUTURE_SKEW
    client_id: str = "respublica-validator"


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

    def __init__(self, contracts: Sequence[Contract], bootstrap: str, *, group_id: str,
                 registry: CollectorRegistry, now_ms: Callable[[], int] = wall_clock_ms,
                 settings: IngestSettings | None = None,
                 metrics: IngestMetrics | None = None) -> None:
        self.settings = settings or IngestSettings()
        self.router = Router(contracts, max_bytes=self.settings.max_bytes,
                             future_skew=self.settings.future_skew)
        self.bootstrap = bootstrap
        self.group_id = group_id
        self.metrics = metrics if metrics is not None else IngestMetrics(registry)
        self.stats = IngestStats()
        self._now_ms = now_ms
        self._partitioners: dict[str, KeyPartitioner] = {}
        self._by_topic: dict[str, StreamValidator] = {
            v.contract.topic_ingest(v.stream): v for v in self.router.validators.values()
        }

    @property
    def ingest_topics(self) -> list[str]:
        """The topics this validator consumes, sorted."""
        return sorted(self._by_topic)

    def run(self, stop_event: threading.Event, *, max_idle_s: float | None = None) -> IngestStats:
        """Validate until ``stop_event`` is set (or nothing arrived for ``max_idle_s``).

        The batch in progress is always finished, flushed and committed before returning.
        """
        consumer = self._consumer()
        try:
            producer = self._producer()
            try:
                self._check_topics(consumer)
                consumer.subscribe(self.ingest_topics)
                self._loop(consumer, producer, stop_event, max_idle_s)
            except BaseException:
                self._forget_uncommitted()
                raise
            finally:
                producer.close(timeout=self.settings.flush_timeout_s)
        finally:
            consumer.close(autocommit=False)
        _log.info("validator stopped: %d consumed, %d accepted, %d rejected in %d batches",
                  self.stats.consumed, self.stats.accepted, self.stats.rejected,
                  self.stats.batches)
        return self.stats

    def _loop(self, consumer: KafkaConsumer, producer: KafkaProducer,
              stop_event: threading.Event, max_idle_s: float | None) -> None:
        idle_since = time.monotonic()
        while not stop_event.is_set():
            batch = consumer.poll(timeout_ms=self.settings.poll_timeout_ms,
                                  max_records=self.settings.max_poll_records)
            if not batch:
                if max_idle_s is not None and time.monotonic() - idle_since >= max_idle_s:
                    return
                continue
            if self.stats.first_record_at is None:
                self.stats.first_record_at = time.monotonic()
            futures: list[Any] = []
            for tp, records in batch.items():
                futures += self._partition(producer, tp.topic, tp.partition, records)
            self._flush(producer, futures)
            self._commit(consumer)
            self.stats.batches += 1
            idle_since = self.stats.last_commit_at = time.monotonic()

    def _partition(self, producer: KafkaProducer, topic: str, partition: int,
                   records: Iterable[Any]) -> list[Any]:
        """Validate and send one partition's records; returns the send futures."""
        validator = self._by_topic[topic]
        raw_topic, dlq_topic = validator.raw_topic, validator.dlq_topic
        partition_of = self._partitioners.get(raw_topic)
        if partition_of is None:
            partition_of = self._partitioners[raw_topic] = KeyPartitioner(
                producer.partitions_for(raw_topic))
        now_ms = self._now_ms()
        futures = []
        reasons: Tally[Reason] = Tally()
        received = 0
        for record in records:
            received += 1
            data = record.value if record.value is not None else b""
            outcome = _validate_one(validator, data, now_ms)
            if isinstance(outcome, Accepted):
                futures.append(producer.send(raw_topic, key=outcome.key, value=outcome.value,
                                             headers=outcome.headers,
                                             partition=partition_of(outcome.key)))
                continue
            reasons[outcome.reason] += 1
            _, value, headers = dlq_record(
                data, outcome, contract=validator.contract, stream=validator.stream.name,
                connector=CONNECTOR, source=f"{topic}/{partition}/{record.offset}",
                now_ms=now_ms)
            futures.append(producer.send(dlq_topic, value=value, headers=headers))
        self._count(validator, received, reasons)
        return futures

    def _count(self, validator: StreamValidator, received: int, reasons: Tally[Reason]) -> None:
        rejected = sum(reasons.values())
        self.stats.consumed += received
        self.stats.rejected += rejected
        self.stats.accepted += received - rejected
        self.stats.reasons.update(reasons)
        self.metrics.add(validator.contract.id, validator.stream.name, CONNECTOR,
                         received=received, rejected=reasons)
        if rejected:
            summary = ", ".join(f"{r.value}={n}" for r, n in sorted(reasons.items()))
            _log.info("%s: %d received, %d rejected (%s)", validator.contract.topic_ingest(
                validator.stream), received, rejected, summary)

    def _flush(self, producer: KafkaProducer, futures: list[Any]) -> None:
        """Wait for every send of the batch; offsets are committed only if all succeeded."""
        producer.flush(timeout=self.settings.flush_timeout_s)
        failed = [f for f in futures if not f.succeeded()]
        if failed:
            kinds = sorted({type(f.exception).__name__ for f in failed if f.is_done})
            msg = (f"{len(failed)} of {len(futures)} records were not acknowledged "
                   f"({', '.join(kinds) or 'timeout'}); offsets not committed")
            raise ConnectorError(msg)

    def _commit(self, consumer: KafkaConsumer) -> None:
        try:
            consumer.commit()
        except CommitFailedError:
            # A rebalance took the partitions away: the new owner re-reads from the last
            # commit, so this batch may be written twice (at least once), never lost.
            _log.warning("offset commit failed after a rebalance; the batch will be replayed")

    def _consumer(self) -> KafkaConsumer:
        try:
            return KafkaConsumer(
                bootstrap_servers=self.bootstrap, group_id=self.group_id,
                client_id=self.settings.client_id, enable_auto_commit=False,
                auto_offset_reset="earliest", isolation_level="read_committed",
                max_poll_records=self.settings.max_poll_records,
                max_partition_fetch_bytes=4 * 1024 * 1024,
                check_crcs=_HAVE_CRC32C, metrics_enabled=False,
            )
        except (KafkaError, OSError) as exc:
            msg = f"cannot reach the Kafka cluster at {self.bootstrap} ({type(exc).__name__})"
            raise ConnectorError(msg) from exc

    def _producer(self) -> KafkaProducer:
        try:
            return KafkaProducer(
                bootstrap_servers=self.bootstrap, client_id=self.settings.client_id,
                acks="all", enable_idempotence=True, linger_ms=self.settings.linger_ms,
                batch_size=self.settings.batch_size,
                compression_type=self.settings.compression,
                max_in_flight_requests_per_connection=5, metrics_enabled=False,
            )
        except (KafkaError, OSError) as exc:
            msg = f"cannot reach the Kafka cluster at {self.bootstrap} ({type(exc).__name__})"
            raise ConnectorError(msg) from exc

    def _forget_uncommitted(self) -> None:
        """After a failed batch, start the duplicate filters afresh: the batch is replayed
        from the last commit and must not be rejected as a duplicate of itself."""
        for validator in self.router.validators.values():
            validator.dedup = DuplicateFilter(validator.stream.allowed_lateness)

    def _check_topics(self, consumer: KafkaConsumer) -> None:
        existing = consumer.topics()
        needed = [t for v in self._by_topic.values()
                  for t in (v.contract.topic_ingest(v.stream), v.raw_topic, v.dlq_topic)]
        missing = sorted(t for t in needed if t not in existing)
        if missing:
            msg = (f"missing topics: {', '.join(missing)}; "
                   "create them with `respublica apply`")
            raise ConnectorError(msg)


def _validate_one(validator: StreamValidator, data: bytes, now_ms: int) -> Accepted | Rejected:
    """The outcome for one record; an unexpected failure is a rejection, never a crash."""
    try:
        return validator.validate(data, now_ms=now_ms, connector=CONNECTOR, source="")
    except Exception as exc:  # validate() already catches; this guards the format sniffing
        _log.error("internal error on one record: %s", type(exc).__name__)
        return _INTERNAL

