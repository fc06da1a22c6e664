"""The two consume loops of a worker, per contract: each on its own thread, in its own
consumer group (``<stem>.<c>.raw``, ``<stem>.<c>.merge``), so no contract's workers take part
in another contract's rebalances or compute its assignment.

``RawLoop`` (stage 1) owns some raw partitions: it folds them, and every
``checkpoint_interval_s`` writes partials + checkpoints, waits for the acknowledgements, then
commits the consumer offsets (a hint only: on every assignment it seeks to the checkpoint).
``MergeLoop`` (stage 2) owns some views: it merges their partials and commits each view's
releases and state in one transaction per step, the views' transactions committed together.
On a fresh start the raw loop's first fold waits (``MERGER_WAIT_S`` at most) until the merge
loop has fenced its views and loaded their state. Rebalances go through
``ConsumerRebalanceListener``: revoked partitions are checkpointed (stage 1) before the group
moves them; assigned ones are restored from the log and the consumer is seeked explicitly.

Both loops consume through ``WorkerClients.loop_consumer``: aiokafka behind a blocking facade
(``broker/kafka/aioconsumer.py``) by default, kafka-python with ``--consumer kafka-python``.
Either runs heartbeats and rebalances on a thread of its own, so callbacks and the loop's work
take turns on the loop's lock; records a poll returned before a rebalance are dropped for the
partitions that rebalance gave back (they are re-read from the restored position).

Outages: every call on the Kafka path has a deadline (sends and checkpoint flushes
``FLUSH_TIMEOUT_S``, the revoke callback's flush ``REVOKE_FLUSH_TIMEOUT_S``, transaction
commits ``COMMIT_TIMEOUT_S``, reads ``READ_TIMEOUT_S``). When one fails because the cluster
does (``is_outage``), the loop drops everything it holds, as a restarted process would, backs
off (1 s doubling to 10 s) and starts over: it rejoins its group and restores each assigned
partition or view from its checkpoint or committed state. That is the exactly-once path a
SIGKILL takes, so an outage changes no release (``docs/reliability.md``). Any other error is a
bug or a refusal (credentials, ACLs) and stops the process with exit code 1.
"""

from __future__ import annotations

import logging
import threading
import time
import traceback
from collections.abc import Callable, Iterable
from typing import Any

from kafka import ConsumerRebalanceListener, KafkaProducer, TopicPartition

from broker.kafka.clients import (
    is_outage,
)
from broker.kafka.publish import OutRecord

_log = logging.getLogger(__name__)
KEYS_REFRESH_S = 5.0
# Long enough for a whole group join: kafka-python 3.0 can leave a join that a short poll
# timeout cut in the middle of its SyncGroup stuck (seen: a member elected leader, never
# assigned). poll() still returns as soon as records arrive.
POLL_MS = 2000
FLUSH_TIMEOUT_S = 30.0
# A revoke callback blocks the consumer's heartbeats: well within the 10 s session timeout.
REVOKE_FLUSH_TIMEOUT_S = 5.0
COMMIT_TIMEOUT_S = 30.0
RETRY_FIRST_S = 1.0
RETRY_MAX_S = 10.0
# Outages in a row while the probe says Kafka answers: past this, it is not an outage.
MAX_FAILURES_WHILE_REACHABLE = 5
# How long a raw loop holds its first fold for its contract's merge loop (in this process) to
# own its views: past it, it folds anyway (the views may be another process's, or slow).
MERGER_WAIT_S = 10.0
# Views whose producers one merge loop fences at once (each fence is a few round trips).
MAX_PARALLEL_FENCES = 8


class ConsumeLoop(threading.Thread):
    """A daemon thread that runs ``run_loop`` until ``stop()``; keeps its fatal error."""

    def __init__(self, name: str) -> None:
        super().__init__(name=name, daemon=True)
        self.stopping = threading.Event()
        self.ready = threading.Event()
        self.error: BaseException | None = None
        self.listener_error: BaseException | None = None
        self.failing: str | None = None  # why the loop is backing off, while it is
        self.outages = 0  # how many times the loop started over
        # True from an error until the loop starts over: a consumer's close() may then run
        # the revoke callback (kafka-python's does, aiokafka's does not), which must release
        # only and save nothing (the state may be half-changed by the error).
        self.discarding = False
        # Whether Kafka answers (the engine's probe); a loop that keeps failing while it does
        # has a problem retrying cannot fix.
        self.kafka_reachable: Callable[[], bool] = lambda: False
        self.pending: set[TopicPartition] = set()
        self._consumer: Any = None
        # Both clients run rebalance callbacks off the loop's thread (kafka-python on its
        # network thread, aiokafka's facade on a thread per callback), and poll() can return
        # while a rebalance goes on: callbacks and the loop's own work take turns on this lock.
        # Never held around poll() or a commit (both need the network thread).
        self.lock = threading.RLock()

    def run(self) -> None:
        delay = RETRY_FIRST_S
        while_reachable = 0
        while not self.stopping.is_set():
            started = time.monotonic()
            try:
                self.discarding = False
                self.run_loop()
                return
            except BaseException as exc:
                error: BaseException = exc
            try:
                self.drop_all()
            except Exception as exc:  # judged below like the first error
                _log.warning("%s: dropping its state failed (%s)", self.name, type(exc).__name__)
            if time.monotonic() - started > 2 * RETRY_MAX_S:
                delay, while_reachable = RETRY_FIRST_S, 0  # it ran a while: a new outage
            while_reachable = while_reachable + 1 if self.kafka_reachable() else 0
            if not is_outage(error) or while_reachable >= MAX_FAILURES_WHILE_REACHABLE:
                self._fail(error, persistent=is_outage(error))
                return
            self.outages += 1
            self.failing = f"{self.name} lost Kafka ({type(error).__name__})"
            _log.warning(
                "%s; state dropped (restored from checkpoints on the next assignment), "
                "retrying in %.0f s",
                self.failing,
                delay,
            )
            self.stopping.wait(delay)
            delay = min(2 * delay, RETRY_MAX_S)

    def _fail(self, exc: BaseException, *, persistent: bool) -> None:
        """Stop for good: the worker's health check reports it, then the process exits 1."""
        self.error = exc
        # Frames only: a library's exception message may quote a record value.
        frames = "".join(traceback.format_tb(exc.__traceback__))
        why = (
            f"failed {MAX_FAILURES_WHILE_REACHABLE} times in a row while Kafka answers"
            if persistent
            else "stopped"
        )
        _log.error("%s %s on %s\n%s", self.name, why, type(exc).__name__, frames)

    def run_loop(self) -> None:
        raise NotImplementedError

    def drop_all(self) -> None:
        """Forget every partition held, as a restarted process would (after an outage)."""
        self.pending = set()
        self.listener_error = None
        self.ready.clear()

    def resumed(self) -> None:
        """The loop's first poll after (re)subscribing: it works (again)."""
        self.ready.set()
        if self.failing is not None:
            _log.info("%s resumed", self.name)
            self.failing = None

    def stop(self) -> None:
        """Ask the loop to finish its batch, checkpoint and leave the group."""
        self.stopping.set()

    def check_listener(self) -> None:
        """Re-raise what a rebalance callback hit: kafka-python only logs those."""
        if self.listener_error is not None:
            raise self.listener_error

    def on_assigned(self, tps: Iterable[TopicPartition]) -> None:
        """Pause new partitions until ``adopt_pending`` has restored them.

        Restoring reads whole topics; done inside the callback it would block the consumer's
        heartbeats (kafka-python runs callbacks on its network loop) and could cost the
        membership it is restoring for.
        """
        new = set(tps)
        self._consumer.pause(*new)
        self.pending |= new

    def adopt_pending(self) -> set[TopicPartition]:
        """After a poll: restore what the last rebalance assigned, seek, then let it flow.

        Returns the partitions restored: what the poll returned for them was fetched before
        the rebalance, from a position that may not follow the restored one (a checkpoint on
        revoke that failed), so the caller drops it; the seek re-reads it.
        """
        if not self.pending:
            return set()
        tps = sorted(self.pending)
        self.pending = set()
        self.adopt(tps)
        self._consumer.resume(*tps)
        return set(tps)

    def adopt(self, tps: list[TopicPartition]) -> None:
        raise NotImplementedError

    def revoke(self, tps: Iterable[TopicPartition]) -> None:
        raise NotImplementedError


class LoopListener(ConsumerRebalanceListener):
    """Forwards rebalances to a loop and keeps their errors for the loop to raise."""

    def __init__(self, loop: ConsumeLoop) -> None:
        self.loop = loop

    def on_partitions_revoked(self, revoked: Any) -> None:
        with self.loop.lock:
            try:
                self.loop.pending -= set(revoked)
                self.loop.revoke(revoked)
            except Exception as exc:
                self.loop.listener_error = exc

    def on_partitions_assigned(self, assigned: Any) -> None:
        with self.loop.lock:
            try:
                self.loop.on_assigned(assigned)
            except Exception as exc:
                self.loop.listener_error = exc


def send_all(
    producer: KafkaProducer, records: Iterable[OutRecord], timeout_s: float = FLUSH_TIMEOUT_S
) -> None:
    futures = [
        producer.send(r.topic, key=r.key, value=r.value, headers=r.headers, partition=r.partition)
        for r in records
    ]
    producer.flush(timeout=timeout_s)  # KafkaTimeoutError past it: an outage
    for future in futures:
        future.get(timeout=timeout_s)  # raises the send's error, if any: never checkpoint past it
