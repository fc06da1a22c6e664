"""Write a batch of records to Kafka and know whether all of it was acknowledged.

The gateway answers a provider only after Kafka has acknowledged every record of the batch
(``acks=all``, idempotent producer). If any send fails or times out, ``write`` raises
``KafkaUnavailable`` and the gateway answers 503: the provider retries, and records of the
batch that did reach Kafka are written again. The duplicate filter of the validator and the
idempotent aggregation of the workers (per event id and window) absorb that repeat.

``KafkaBatchWriter`` starts its producer lazily, so the gateway can start (and answer 503)
while the cluster is down, and recover when it comes back.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple, Protocol

from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError, KafkaTimeoutError
from aiokafka.partitioner import murmur2

from broker.kafka.settings import KafkaSettings, as_settings
from contracts.errors import RespublicaError

_log = logging.getLogger(__name__)
HASH_CACHE_SIZE = 500_000


class KafkaUnavailable(RespublicaError):
    """Kafka did not acknowledge a batch (unreachable, timed out, or refused)."""


class OutRecord(NamedTuple):
    """One record to produce."""

    topic: str
    key: bytes | None
    value: bytes
    headers: list[tuple[str, bytes]]
    partition: int | None = None
    """An explicit partition (control records); else the key's, as the default partitioner."""


class BatchWriter(Protocol):
    """Writes batches with all-or-error acknowledgement; the gateway's only Kafka contact."""

    async def write(self, records: Sequence[OutRecord]) -> None:
        """Return when every record is acknowledged; raise ``KafkaUnavailable`` otherwise."""
        ...

    async def close(self) -> None:
        """Flush and release the connection."""
        ...

    @property
    def connected(self) -> bool:
        """Whether the last contact with Kafka succeeded (for ``/healthz``)."""
        ...


@dataclass(frozen=True)
class ProducerSettings:
    """Client knobs of the gateway's producer."""

    kafka: KafkaSettings | str
    role: str = "gateway"
    linger_ms: int = 5
    max_batch_size: int = 512 * 1024
    request_timeout_ms: int = 15_000
    ack_timeout_s: float = 20.0
    compression: str | None = None  # loopback and LAN: compressing costs more than it saves


async def close_within(writer: BatchWriter, timeout_s: float) -> None:
    """Close ``writer``, giving up after ``timeout_s``: an idempotent producer retries a batch
    Kafka does not take for ever, and its ``stop()`` waits for every batch; such records were
    never acknowledged. A writer that fails to close is dropped anyway."""
    try:
        async with asyncio.timeout(timeout_s):  # not wait_for: it can swallow a cancel
            await writer.close()
    except TimeoutError:
        _log.warning(
            "a producer did not close within %.0f s; its unacknowledged batches are dropped",
            timeout_s,
        )
    except Exception as exc:
        _log.debug("a producer did not close cleanly: %s", type(exc).__name__)


class KafkaBatchWriter:
    """``BatchWriter`` on aiokafka's ``AIOKafkaProducer`` (acks=all, idempotent)."""

    def __init__(self, settings: ProducerSettings) -> None:
        self.settings = settings
        self._producer: AIOKafkaProducer | None = None
        self._lock = asyncio.Lock()
        self._connected = False
        self._hashes: dict[bytes, int] = {}
        self._spread = itertools.count()  # round robin for records without a key (DLQ)

    @property
    def connected(self) -> bool:
        """Whether the last batch (or start) reached Kafka."""
        return self._connected

    async def start(self) -> None:
        """Connect now rather than on the first ``write``; ``KafkaUnavailable`` if it cannot."""
        await self._started()

    async def partitions(self, topic: str) -> list[int]:
        """The partitions of a topic, sorted (from the producer's metadata)."""
        producer = await self._started()
        return sorted(await producer.partitions_for(topic))

    async def write(self, records: Sequence[OutRecord]) -> None:
        """Send every record, then wait for all acknowledgements (bounded by a timeout)."""
        if not records:
            return
        producer = await self._started()
        try:
            # One deadline for the whole batch: sends wait for metadata when Kafka is away.
            async with asyncio.timeout(self.settings.ack_timeout_s):  # wait_for may lose a cancel
                await self._send_all(producer, records)
        except (KafkaError, TimeoutError, OSError) as exc:
            self._connected = False
            _log.warning(
                "Kafka did not acknowledge a batch of %d records: %s",
                len(records),
                type(exc).__name__,
            )
            raise KafkaUnavailable(type(exc).__name__) from exc
        self._connected = True

    async def _send_all(self, producer: AIOKafkaProducer, records: Sequence[OutRecord]) -> None:
        """One producer batch per topic partition, then wait for every batch's ack.

        Building batches ourselves skips aiokafka's per-message path (a metadata wait, a
        pure-Python murmur2 and a future per record), the gateway's main cost after
        validation. Partitions are the default partitioner's (murmur2 of the key, as the
        Java and kafka-python clients), so raw topics are keyed the same whoever writes.
        """
        groups: dict[tuple[str, int], list[OutRecord]] = {}
        partitions: dict[str, list[int]] = {}
        for record in records:
            if record.topic not in partitions:
                partitions[record.topic] = sorted(await producer.partitions_for(record.topic))
            choices = partitions[record.topic]
            if record.partition is not None:
                groups.setdefault((record.topic, record.partition), []).append(record)
                continue
            index = self._hash(record.key) if record.key is not None else next(self._spread)
            groups.setdefault((record.topic, choices[index % len(choices)]), []).append(record)
        futures = []
        for (topic, partition), items in groups.items():
            batch = producer.create_batch()
            for record in items:
                if not _append(batch, record):
                    futures.append(await _enqueue(producer, batch, topic, partition))
                    batch = producer.create_batch()
                    if not _append(batch, record):
                        msg = "a record is larger than the producer's batch size"
                        raise KafkaUnavailable(msg)
            futures.append(await _enqueue(producer, batch, topic, partition))
        await asyncio.gather(*futures)

    def _hash(self, key: bytes) -> int:
        """murmur2 of a key, positive; cached, as subjects repeat (bounded memory)."""
        cached = self._hashes.get(key)
        if cached is None:
            if len(self._hashes) >= HASH_CACHE_SIZE:
                self._hashes.clear()
            cached = self._hashes[key] = murmur2(key) & 0x7FFFFFFF
        return cached

    async def close(self) -> None:
        """Stop the producer if it was started (pending records are flushed)."""
        async with self._lock:
            if self._producer is not None:
                await self._stop(self._producer)
                self._producer = None

    async def _started(self) -> AIOKafkaProducer:
        async with self._lock:
            if self._producer is not None:
                return self._producer
            producer = AIOKafkaProducer(**self._client_options())
            try:
                async with asyncio.timeout(self.settings.ack_timeout_s):
                    await producer.start()
            except (KafkaError, TimeoutError, OSError) as exc:
                self._connected = False
                await self._stop(producer)
                _log.warning("cannot reach Kafka: %s", type(exc).__name__)
                raise KafkaUnavailable(type(exc).__name__) from exc
            self._producer = producer
            self._connected = True
            return producer

    def _client_options(self) -> dict[str, Any]:
        s = self.settings
        return {
            **as_settings(s.kafka).aiokafka(s.role),
            "acks": "all",
            "enable_idempotence": True,
            "linger_ms": s.linger_ms,
            "max_batch_size": s.max_batch_size,
            "request_timeout_ms": s.request_timeout_ms,
            "compression_type": s.compression,
        }

    @staticmethod
    async def _stop(producer: AIOKafkaProducer) -> None:
        try:
            await producer.stop()
        except (KafkaError, OSError) as exc:  # closing a broken client: nothing left to save
            _log.debug("producer stop failed: %s", type(exc).__name__)


async def _enqueue(
    producer: AIOKafkaProducer, batch: Any, topic: str, partition: int
) -> asyncio.Future[Any]:
    """``send_batch``, retried while the partition's previous batch is still queued.

    aiokafka admits one undrained batch per partition and gives up on the wait early (its
    remaining time shrinks by the total elapsed on every loop), so concurrent requests
    would get ``KafkaTimeoutError`` while Kafka is fine. The caller's deadline bounds this.
    """
    while True:
        try:
            return await producer.send_batch(batch, topic, partition=partition)
        except KafkaTimeoutError:
            await asyncio.sleep(0.001)


def _append(batch: Any, record: OutRecord) -> bool:
    """Add a record to a producer batch; False when the batch is full."""
    return (
        batch.append(key=record.key, value=record.value, timestamp=None, headers=record.headers)
        is not None
    )
