"""The few Kafka client recipes the worker needs: settings, read-to-end, key log.

The worker's two loops consume through aiokafka (``LoopClient``, ``broker/kafka/aioconsumer.py``:
its C record parser costs a third of kafka-python's pure-Python one per record); producers,
read-to-end, the key log and admin stay on kafka-python.

Why kafka-python here rather than faust's consumer: correctness needs an explicit seek to a
checkpoint on every assignment, reads to a known end, and one transactional producer per view
with our own ``transactional_id``; see ``docs/architecture.md`` ("Why not faust agents").
"""

from __future__ import annotations

import hashlib
import logging
import socket
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from aiokafka import errors as aio_errors
from aiokafka.coordinator.assignors.roundrobin import (
    RoundRobinPartitionAssignor as AioRoundRobinPartitionAssignor,
)
from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from kafka.consumer.fetcher import ConsumerRecord
from kafka.coordinator.assignors.roundrobin import RoundRobinPartitionAssignor
from kafka.errors import (
    CommitFailedError,
    InvalidProducerEpochError,
    KafkaError,
    KafkaTimeoutError,
    ProducerFencedError,
    RebalanceInProgressError,
)

from broker.deadline import Deadline
from broker.kafka.aioconsumer import AioConsumer
from broker.kafka.defaults import WORKER_GROUP, worker_group
from broker.kafka.settings import KafkaSettings, as_settings
from broker.kafka.topics import STATE_MAX_MESSAGE_BYTES
from contracts.errors import RespublicaError
from contracts.model import Contract

_log = logging.getLogger(__name__)
READ_TIMEOUT_S = 60.0
# A producer request must fit the largest state record plus the batch framing.
MAX_REQUEST_BYTES = STATE_MAX_MESSAGE_BYTES + 64 * 1024
# Raw partitions are fetched 1 MiB at a time (not the state topics' 32 MiB): one fetch then
# holds a slice of every partition rather than the whole backlog of one, so a preloaded topic
# is read evenly in event time and windows keep closing.
RAW_FETCH_BYTES = 1024 * 1024


class WorkerError(RespublicaError):
    """The worker cannot start or go on (unreachable cluster, missing topics, fenced...)."""


class KafkaOutage(WorkerError):
    """The cluster did not answer in time: a loop drops its state and retries (no exit)."""


# The group or the view's next owner moved on: start over, as after a rebalance.
_GROUP_MOVED_ON = (
    CommitFailedError,
    RebalanceInProgressError,
    ProducerFencedError,
    InvalidProducerEpochError,
    aio_errors.CommitFailedError,
    aio_errors.RebalanceInProgressError,
    aio_errors.ProducerFenced,
    aio_errors.InvalidProducerEpoch,
)
# aiokafka's errors that say the cluster did not answer but are not marked retriable.
_AIO_OUTAGES = (aio_errors.KafkaTimeoutError, aio_errors.RequestTimedOutError)
# What a client call raises when Kafka fails it (either library; a bounded call's timeout).
CLIENT_ERRORS = (KafkaError, aio_errors.KafkaError, TimeoutError)

LoopClient = Literal["aiokafka", "kafka-python"]
"""The client the worker's loops consume with (``respublica worker --consumer``)."""
DEFAULT_LOOP_CLIENT: LoopClient = "aiokafka"


def abandon(producer: KafkaProducer, timeout_s: float) -> None:
    """Close ``producer`` within ``timeout_s``, dropping what Kafka has not acknowledged.

    kafka-python's ``close`` flushes first and raises when batches are still unacknowledged
    (a broker gone), leaving the sender thread and its sockets alive. After an outage the
    unacknowledged records are not wanted (the next owner replays from the checkpoint), so
    the sender is force-closed (private: no public way in kafka-python 3.0).
    """
    try:
        producer.close(timeout=timeout_s)
    except Exception as exc:
        _log.debug("producer close failed (%s): forced", type(exc).__name__)
        sender = getattr(producer, "_sender", None)
        if sender is not None:
            sender.force_close()


def is_refusal(exc: BaseException) -> bool:
    """Whether ``exc`` or what caused it is an authentication or authorisation refusal.

    By class name, so that kafka-python's and aiokafka's errors alike are recognised
    (``SaslAuthenticationFailed``, ``TopicAuthorizationFailedError``, ...).
    """
    return any(
        "Authoriz" in type(e).__name__ or "Authentic" in type(e).__name__ for e in _causes(exc)
    )


def is_outage(exc: BaseException) -> bool:
    """Whether ``exc`` (or what caused it) is the cluster failing rather than a bug or a refusal.

    Outages: kafka-python's and aiokafka's retriable errors (timeouts, lost connections, leaders
    moving), aiokafka's timeouts, connection and socket timeouts, our own ``KafkaOutage``, and
    the errors that say the group moved on (a commit after a rebalance, a producer fenced by the
    view's next owner), from either library: the loops back off and start over from their
    checkpoints (``docs/reliability.md``). Not outages: refusals (credentials, ACLs), records
    Kafka will never take (too large), a bad certificate or file, and bugs: retrying cannot fix
    those, so they stop the process.
    Only explicit causes (``raise ... from``) are followed: an error raised while handling
    another is judged on its own.
    """
    if is_refusal(exc):
        return False
    for current in _causes(exc):
        if isinstance(current, (KafkaOutage, *_GROUP_MOVED_ON, *_AIO_OUTAGES)):
            return True
        if isinstance(current, KafkaError | aio_errors.KafkaError) and current.retriable:
            return True
        if isinstance(current, ConnectionError | TimeoutError | socket.gaierror):
            return True
    return False


def _causes(exc: BaseException) -> list[BaseException]:
    seen: list[BaseException] = []
    current: BaseException | None = exc
    while current is not None and all(current is not e for e in seen):
        seen.append(current)
        current = current.__cause__
    return seen


def commit_within(producer: KafkaProducer, timeout_s: float) -> None:
    """``commit_transaction`` that gives up after ``timeout_s`` (``KafkaTimeoutError``).

    kafka-python 3.0's ``commit_transaction`` waits without a deadline: with the broker gone
    it blocks its loop for as long as the outage lasts. The commit is begun exactly as the
    library does it, then awaited with a deadline; on timeout the caller abandons the producer
    (the view's next owner fences it and aborts the open transaction in ``init_transactions``).
    """
    await_commit(begin_commit(producer), timeout_s)


class PendingCommit:
    """A transaction commit under way (``begin_commit``); ``done_at`` is the wall-clock time
    its producer's network thread saw it finish (None until then), for the release delay."""

    def __init__(self, result: Any) -> None:
        self.result = result
        self.done_at: float | None = None
        finish = result.done

        def stamped(error: BaseException | None = None) -> None:
            self.done_at = time.time()
            finish(error)

        # Private, like the rest: kafka-python's result has no completion callback. A commit
        # that finished before this line is stamped when awaited (later, never earlier).
        result.done = stamped


def begin_commit(producer: KafkaProducer) -> PendingCommit:
    """Start committing ``producer``'s transaction, without waiting: the commit goes on in
    its network thread (so several producers commit at once); ``await_commit`` waits for it."""
    pending = PendingCommit(producer._transaction_manager.begin_commit())  # see commit_within
    producer._sender.wakeup()
    return pending


def await_commit(pending: PendingCommit, timeout_s: float) -> float:
    """Wait for a commit ``begin_commit`` started; returns when it finished (``time.time()``).
    ``KafkaTimeoutError`` after ``timeout_s``; the commit's own error if it failed."""
    if not pending.result.wait(timeout_ms=int(timeout_s * 1000)):
        msg = f"transaction commit not acknowledged within {timeout_s:.0f} s"
        raise KafkaTimeoutError(msg)
    return pending.done_at or time.time()


@dataclass(frozen=True)
class WorkerClients:
    """The worker's consumers and producers: the cluster's settings, a role and a group stem."""

    kafka: KafkaSettings
    role: str = "worker"
    group: str = WORKER_GROUP
    loop_client: LoopClient = DEFAULT_LOOP_CLIENT

    def raw_group(self, contract_id: str) -> str:
        """Consumer group of stage 1 of one contract (its raw partitions spread over its
        workers): ``<stem>.<c>.raw``, joined by no other contract's workers."""
        return worker_group(contract_id, "raw", self.group)

    def merge_group(self, contract_id: str) -> str:
        """Consumer group of stage 2 of one contract (one owner per view's partials
        partition): ``<stem>.<c>.merge``."""
        return worker_group(contract_id, "merge", self.group)

    def group_client_id(self, contract_id: str) -> str:
        """The client id of this process's consumers in the contract's groups:
        ``<prefix>-<h>-<role>``, ``h`` a short hash of the contract and the role.

        The round-robin assignor deals partitions to members sorted by member id, which the
        broker derives from the client id. With the same client id in every contract's
        groups, each contract would give its first view to the same process, its second to
        the next, and so on (two of eight processes owning all six example views); a hash
        that differs per contract orders the processes differently in each group, so the
        views spread over them.
        """
        role = self.kafka.client_id(self.role)
        digest = hashlib.sha256(f"{contract_id}/{role}".encode()).hexdigest()[:8]
        return f"{self.kafka.client_id_prefix}-{digest}-{self.role}"

    def consumer(self, **overrides: Any) -> KafkaConsumer:
        """A consumer that never auto-commits and never sees aborted transactions."""
        config: dict[str, Any] = {
            **self.kafka.kafka_python(self.role),
            **self._consumer_options(),
            "partition_assignment_strategy": [RoundRobinPartitionAssignor],
        }
        config.update(overrides)
        return KafkaConsumer(**config)

    def loop_consumer(self, **overrides: Any) -> KafkaConsumer | AioConsumer:
        """The consumer of a worker loop: ``consumer`` on the client ``loop_client`` names.

        On aiokafka, the same options (aiokafka spells them alike; its own round-robin
        assignor) behind ``AioConsumer``'s blocking facade.
        """
        if self.loop_client == "kafka-python":
            return self.consumer(**overrides)
        config: dict[str, Any] = {
            **self.kafka.aiokafka(self.role),
            **self._consumer_options(),
            "partition_assignment_strategy": (AioRoundRobinPartitionAssignor,),
            # aiokafka's default is session_timeout_ms (10 s), kafka-python's
            # max_poll_interval_ms (300 s): a revoke callback waits for its loop's lock (held
            # through a restore or a checkpoint), and the next owner must wait for it.
            "rebalance_timeout_ms": 300_000,
        }
        config.update(overrides)
        return AioConsumer(config, name=str(config.get("client_id", self.role)))

    @staticmethod
    def _consumer_options() -> dict[str, Any]:
        return {
            "enable_auto_commit": False,
            "auto_offset_reset": "earliest",
            "isolation_level": "read_committed",
            "max_partition_fetch_bytes": MAX_REQUEST_BYTES,
            # A killed worker's partitions move after this long (the broker's minimum is 6 s);
            # rebalance callbacks must finish well within it (they block heartbeats).
            "session_timeout_ms": 10_000,
            "heartbeat_interval_ms": 2_000,
            # Round robin (set by the callers, one class per library) spreads the
            # single-partition partials topics (one per view) over the workers; the range
            # assignor would give every view to the same worker.
        }

    def producer(self, **overrides: Any) -> KafkaProducer:
        """An idempotent producer (ordered, no duplicates on retry), acks from all replicas."""
        config: dict[str, Any] = {
            **self.kafka.kafka_python(self.role),
            "acks": "all",
            "enable_idempotence": True,
            "linger_ms": 10,
            "batch_size": 256 * 1024,
            "max_request_size": MAX_REQUEST_BYTES,
        }
        config.update(overrides)
        return KafkaProducer(**config)


def subscribe(consumer: KafkaConsumer | AioConsumer, topics: list[str], listener: Any) -> None:
    """Subscribe once the topics' metadata is known.

    Otherwise the group leader may assign from a metadata snapshot that lacks them, and the
    topics stay unassigned until some later metadata change triggers a rebalance.
    """
    deadline = Deadline(READ_TIMEOUT_S)
    for topic in topics:
        while not consumer.partitions_for_topic(topic):
            if deadline.expired():
                msg = f"no metadata for topic {topic}: does it exist? (run `respublica apply`)"
                raise KafkaOutage(msg)
            time.sleep(0.1)
    consumer.subscribe(topics, listener=listener)


class ReadTimeout(KafkaOutage):
    """A topic could not be read to its end in time (the broker is down or too slow)."""


def read_partitions(
    consumer: KafkaConsumer,
    tps: Sequence[TopicPartition],
    *,
    starts: Mapping[TopicPartition, int] | None = None,
    ends: Mapping[TopicPartition, int] | None = None,
    timeout_s: float = READ_TIMEOUT_S,
) -> dict[TopicPartition, list[ConsumerRecord]]:
    """Every record of every partition in ``tps`` from ``starts`` (default: the beginning) up
    to ``ends`` (default: the end now), per partition in offset order.

    The one read-to-end of respublica: it returns only when every partition is read to its
    end, and raises ``ReadTimeout`` at the deadline (never a silent partial read). With
    ``read_committed`` the default end is the last stable offset; pass the high watermark as
    ``ends`` to also wait for transactions open right now to finish.
    """
    tps = list(tps)
    consumer.assign(tps)
    for tp in tps:
        if starts is None:
            consumer.seek_to_beginning(tp)
        else:
            consumer.seek(tp, starts[tp])
    stop = dict(consumer.end_offsets(tps)) if ends is None else dict(ends)
    out: dict[TopicPartition, list[ConsumerRecord]] = {tp: [] for tp in tps}
    deadline = Deadline(timeout_s)
    while any(consumer.position(tp) < stop[tp] for tp in tps):
        if deadline.expired():
            topics = ", ".join(sorted({tp.topic for tp in tps}))
            msg = f"reading {topics} to its end timed out after {timeout_s:.0f} s"
            raise ReadTimeout(msg)
        for tp, records in consumer.poll(timeout_ms=200, max_records=5000).items():
            out[tp].extend(r for r in records if r.offset < stop[tp])
    return out


def read_to_end(
    consumer: KafkaConsumer,
    tp: TopicPartition,
    start: int = 0,
    *,
    end: int | None = None,
    timeout_s: float = READ_TIMEOUT_S,
) -> list[ConsumerRecord]:
    """``read_partitions`` of one partition, from ``start`` up to ``end`` (default: now)."""
    return read_partitions(
        consumer,
        [tp],
        starts={tp: start},
        ends=None if end is None else {tp: end},
        timeout_s=timeout_s,
    )[tp]


def high_watermark(settings: WorkerClients, tp: TopicPartition) -> int:
    """The end of ``tp`` including records of transactions still open."""
    consumer = settings.consumer(isolation_level="read_uncommitted")
    try:
        return int(consumer.end_offsets([tp])[tp])
    finally:
        consumer.close()


def read_topic(
    settings: WorkerClients,
    topic: str,
    *,
    committed_only: bool = True,
    wait_open_transactions: bool = False,
) -> list[ConsumerRecord]:
    """Every record of partition 0 of ``topic``, with a throw-away consumer."""
    tp = TopicPartition(topic, 0)
    end = high_watermark(settings, tp) if wait_open_transactions else None
    isolation = "read_committed" if committed_only else "read_uncommitted"
    consumer = settings.consumer(isolation_level=isolation)
    try:
        return read_to_end(consumer, tp, 0, end=end)
    finally:
        consumer.close()


class KafkaKeysLog:
    """``broker.worker.keystore.KeysLog`` on partition 0 of ``respublica.<c>.keys``."""

    def __init__(self, settings: WorkerClients, topic: str) -> None:
        self.topic = topic
        self._tp = TopicPartition(topic, 0)
        self._consumer = settings.consumer()
        self._producer = settings.producer(linger_ms=0)

    def read_from(self, offset: int) -> list[tuple[int, str, bytes | None]]:
        """Records at or after ``offset``, up to the current end."""
        return [
            (r.offset, r.key.decode("utf-8", "replace"), r.value)  # a foreign key is refused
            for r in read_to_end(self._consumer, self._tp, offset)
            if r.key is not None
        ]

    def append(self, key: str, value: bytes | None) -> None:
        """Write one record and wait for the broker's acknowledgement."""
        try:
            self._producer.send(self.topic, key=key.encode(), value=value).get(timeout=30)
        except KafkaError as exc:
            msg = f"writing to {self.topic} failed ({type(exc).__name__})"
            raise WorkerError(msg) from exc

    def close(self) -> None:
        """Release the clients."""
        self._consumer.close()
        self._producer.close(timeout=10)


def end_of_stream(kafka: KafkaSettings | str, contract: Contract) -> None:
    """The documented control record on every raw partition: every window may now close.

    For replays, the demo and the benchmark (raw topics are internal: only respublica writes
    them); see ``docs/architecture.md``.
    """
    from broker.kafka.internal import CONTROL_HEADER, END_OF_STREAM_MARK

    producer = KafkaProducer(**as_settings(kafka).kafka_python("control"), acks="all")
    try:
        for stream in contract.streams:
            for partition in range(stream.partitions):
                producer.send(
                    contract.topic_raw(stream),
                    partition=partition,
                    value=b"",
                    headers=[(CONTROL_HEADER, END_OF_STREAM_MARK)],
                )
        producer.flush(timeout=60)
    finally:
        producer.close()
