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
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from kafka import ConsumerRebalanceListener, KafkaProducer, TopicPartition
from kafka.structs import OffsetAndMetadata

from broker.deadline import Deadline
from broker.kafka.clients import (
    RAW_FETCH_BYTES,
    PendingCommit,
    WorkerClients,
    abandon,
    await_commit,
    begin_commit,
    is_outage,
    read_topic,
    subscribe,
)
from broker.kafka.internal import CHECKPOINT_PREFIX, Checkpoint, state_key
from broker.kafka.publish import OutRecord
from broker.worker.flow import FlowControl
from broker.worker.keystore import KeyStore
from broker.worker.merge import MergeOutput, MergeStage
from broker.worker.metrics import WorkerMetrics
from broker.worker.partials import PartialsStage

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


class _Loop(threading.Thread):
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


class _Listener(ConsumerRebalanceListener):
    """Forwards rebalances to a loop and keeps their errors for the loop to raise."""

    def __init__(self, loop: _Loop) -> None:
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


def _send_all(
    producer: KafkaProducer, records: Iterable[OutRecord], timeout_s: float = FLUSH_TIMEOUT_S
) -> None:
    futures = [
        producer.send(r.topic, key=r.key, value=r.value, headers=r.headers, partition=r.partition)
        for r in records
    ]
    producer.flush(timeout=timeout_s)  # KafkaTimeoutError past it: an outage
    for future in futures:
        future.get(timeout=timeout_s)  # raises the send's error, if any: never checkpoint past it


class RawLoop(_Loop):
    """Stage 1 over the raw topics of one contract (``contract``), in its raw group."""

    def __init__(
        self,
        settings: WorkerClients,
        stages: Mapping[str, PartialsStage],
        keystores: Mapping[str, KeyStore],
        metrics: WorkerMetrics,
        *,
        contract: str,
        checkpoint_interval_s: float = 1.0,
        max_records: int = 2000,
        merger_settled: threading.Event | None = None,
    ) -> None:
        super().__init__(f"respublica-raw.{contract}")
        self.contract = contract
        self.settings = settings
        self.stages = dict(stages)
        self.keystores = dict(keystores)
        self.metrics = metrics
        self.interval = checkpoint_interval_s
        self.max_records = max_records
        self._producer: KafkaProducer | None = None
        self._destroyed: dict[str, int] = {}
        self._keys_read = 0.0
        self._next: dict[TopicPartition, int] = {}  # next offset to fold, per held partition
        self.flow = FlowControl(None)  # its consumer is created on the loop's thread
        # Set once this process's merge loop of the contract owns its views: the first fold
        # waits for it (``MERGER_WAIT_S``), so the first windows do not wait for the merger.
        self.merger_settled = merger_settled
        self.first_fold_at: float | None = None  # time.monotonic() of the first fold

    def run_loop(self) -> None:
        self._producer = self.settings.producer()
        self._consumer = self.settings.loop_consumer(
            group_id=self.settings.raw_group(self.contract),
            client_id=self.settings.group_client_id(self.contract),
            max_poll_records=self.max_records,
            max_partition_fetch_bytes=RAW_FETCH_BYTES,
        )
        self.flow.consumer = self._consumer
        subscribe(self._consumer, sorted(self.stages), _Listener(self))
        last = time.monotonic()
        try:
            while not self.stopping.is_set():
                self.flow.before_poll()
                polled = self._consumer.poll(timeout_ms=POLL_MS)
                if polled:
                    self.metrics.first_poll(time.time())  # the bench's clock starts here
                    self._await_merger()
                self.check_listener()
                with self.lock:
                    restored = self.adopt_pending()
                    self.resumed()
                    for tp, records in polled.items():
                        if tp not in restored:
                            self._process(tp, records)
                    self._balance(idle=not polled)
                    self._measure_lag()
                    due = time.monotonic() - last >= self.interval
                    written = self.checkpoint(self._held()) if due else {}
                if due:
                    self._commit(written)
                    last = time.monotonic()
            with self.lock:
                written = self.checkpoint(self._held())
            self._commit(written)
        except BaseException:
            self.discarding = True  # close() below may revoke: release only, save nothing
            raise
        finally:
            self._consumer.close(autocommit=False)
            abandon(self._producer, 10)

    def _await_merger(self) -> None:
        """Before the first fold only: let the merge loop fence its views' producers and load
        their state first. Folding a backlog meanwhile would compete with it for the
        interpreter, and every checkpoint written before it owns the views would wait for it
        (the release delay counts from the checkpoint). Outside the lock: rebalances go on."""
        if self.first_fold_at is not None:
            return
        if self.merger_settled is not None:
            waited = time.monotonic()
            deadline = Deadline(MERGER_WAIT_S)
            while not (self.merger_settled.is_set() or self.stopping.is_set()):
                if deadline.expired():
                    _log.info("%s: its merger still owns no views: folding", self.name)
                    break
                self.merger_settled.wait(0.05)
            _log.info("%s waited %.2f s for its merger", self.name, time.monotonic() - waited)
        self.first_fold_at = time.monotonic()

    def _balance(self, *, idle: bool) -> None:
        """Event-time flow control (``broker.worker.flow``): pause partitions that ran ahead."""
        if idle:
            self.flow.idle()
        else:
            self.flow.balance(
                {
                    topic: ({p: stage.watermark(p) for p in stage.partitions}, stage.lead_ms)
                    for topic, stage in self.stages.items()
                }
            )
        self.metrics.paused.labels(self.contract).set(len(self.flow.paused))

    def _held(self) -> list[TopicPartition]:
        return [TopicPartition(t, p) for t, s in self.stages.items() for p in s.partitions]

    def _process(self, tp: TopicPartition, records: list[Any]) -> None:
        stage = self.stages[tp.topic]
        if tp.partition not in stage.partitions:
            return  # not restored (revoked in the same poll): it will be re-read
        stage.process(tp.partition, records)
        if records:
            self._next[tp] = records[-1].offset + 1

    def _measure_lag(self) -> None:
        """``consumer_lag`` per raw topic: end offset minus next offset, over held partitions.

        The end offsets are the high watermarks the last fetches brought back (no extra call);
        a topic none of whose partitions was fetched yet keeps its previous value.
        """
        for topic, stage in self.stages.items():
            ends = {p: self._consumer.highwater(TopicPartition(topic, p)) for p in stage.partitions}
            known = {p: end for p, end in ends.items() if end is not None}
            if known:
                lag = sum(
                    max(0, end - self._next.get(TopicPartition(topic, p), end))
                    for p, end in known.items()
                )
                self.metrics.consumer_lag.labels(stage.contract.id, topic).set(lag)

    def checkpoint(
        self, tps: Iterable[TopicPartition], timeout_s: float = FLUSH_TIMEOUT_S
    ) -> dict[TopicPartition, int]:
        """Write partials + checkpoints of ``tps`` and wait for them; returns resume offsets."""
        assert self._producer is not None  # noqa: S101 - only called from the loop
        tps = list(tps)
        out = [r for tp in tps for r in self.stages[tp.topic].checkpoint(tp.partition)]
        if not out:
            return {}
        _send_all(self._producer, out, timeout_s)
        return {tp: self.stages[tp.topic].resume_offset(tp.partition) for tp in tps}

    def _commit(self, written: Mapping[TopicPartition, int]) -> None:
        # A hint only (every assignment seeks to the checkpoint), so fire and forget.
        if written:
            self._consumer.commit_async(
                {tp: OffsetAndMetadata(offset, "", -1) for tp, offset in written.items()}
            )
        self._refresh_keys()

    def _refresh_keys(self) -> None:
        # Learn floors written by the mergers, so this process shreds its copies too.
        if time.monotonic() - self._keys_read < KEYS_REFRESH_S:
            return
        self._keys_read = time.monotonic()
        for store in self.keystores.values():
            store.refresh()
            store.roll()  # lets compaction drop the shredded keys' bytes (docs/security.md)
            done = store.destroyed - self._destroyed.get(store.contract, 0)
            if done:
                self.metrics.keys_destroyed.labels(store.contract).inc(done)
                self._destroyed[store.contract] = store.destroyed

    def revoke(self, tps: Iterable[TopicPartition]) -> None:
        """Checkpoint revoked partitions before the group hands them to another worker."""
        tps = list(tps)
        held = [tp for tp in tps if tp.partition in self.stages[tp.topic].partitions]
        self.flow.forget(tps)
        if self.discarding:  # after an error: the state may be half-changed, never save it
            self._release(held)
            return
        try:
            # No commit here: the group is rebalancing (and kafka-python would wait on this
            # very network thread).
            self.checkpoint(held, REVOKE_FLUSH_TIMEOUT_S)
        except Exception as exc:
            if not is_outage(exc):
                raise
            # The next owner restores the previous checkpoint and replays the tail: a slow
            # broker during a rebalance costs a replay, not a restart of the loop.
            _log.warning("checkpoint on revoke failed (%s)", type(exc).__name__)
        finally:
            self._release(held)

    def _release(self, tps: Iterable[TopicPartition]) -> None:
        for tp in tps:
            self.stages[tp.topic].release(tp.partition)
            self._next.pop(tp, None)
        held = sum(len(s.partitions) for s in self.stages.values())
        self.metrics.held.labels(self.contract, "raw").set(held)

    def drop_all(self) -> None:
        """After an outage: forget every partition; the next assignment restores them."""
        super().drop_all()
        with self.lock:
            self._release(self._held())
            self.flow = FlowControl(None)

    def adopt(self, tps: list[TopicPartition]) -> None:
        """Restore assigned partitions from their checkpoints and seek to them."""
        by_topic: dict[str, list[int]] = {}
        for tp in tps:
            by_topic.setdefault(tp.topic, []).append(tp.partition)
        for topic, partitions in by_topic.items():
            stage = self.stages[topic]
            found = {
                view: last_checkpoints(self.settings, ptopic, view)
                for view, ptopic in stage.partials_topics.items()
            }
            for partition in partitions:
                source = f"p{partition}"
                resume = stage.restore(partition, {v: cps.get(source) for v, cps in found.items()})
                self._consumer.seek(TopicPartition(topic, partition), resume)
                self._next[TopicPartition(topic, partition)] = resume
        held = sum(len(s.partitions) for s in self.stages.values())
        self.metrics.held.labels(self.contract, "raw").set(held)
        _log.info("raw partitions of %s held: %d", self.contract, held)


def last_checkpoints(settings: WorkerClients, topic: str, view: str) -> dict[str, Checkpoint]:
    """The last checkpoint of every source on a partials topic (read to its end)."""
    found: dict[str, Checkpoint] = {}
    for record in read_topic(settings, topic):
        if record.key is not None and record.key.startswith(CHECKPOINT_PREFIX) and record.value:
            checkpoint = Checkpoint.from_value(view, record.value)
            found[checkpoint.source] = checkpoint
    return found


MergeFactory = Callable[[str], MergeStage]
"""Builds the stage of a partials topic (fresh merger, to be restored)."""


class MergeLoop(_Loop):
    """Stage 2 over the partials topics of one contract's views (``contract``), in its merge
    group; one transactional producer per owned view."""

    def __init__(
        self,
        settings: WorkerClients,
        factory: MergeFactory,
        topics: Iterable[str],
        state_topics: Mapping[str, str],
        *,
        contract: str,
        progress: Callable[[MergeStage], None] | None = None,
        metrics: WorkerMetrics | None = None,
        fault: Callable[[str, MergeOutput], None] | None = None,
    ) -> None:
        super().__init__(f"respublica-merge.{contract}")
        self.contract = contract
        self.settings = settings
        self.factory = factory
        self.topics = sorted(topics)
        self.state_topics = dict(state_topics)  # partials topic -> state topic
        self.progress = progress  # event-time progress, for key destruction
        self.metrics = metrics
        self.fault = fault  # tests: raise between a view's send and its commit
        self.owned: dict[str, tuple[MergeStage, KafkaProducer]] = {}
        # Views whose transaction is being committed, in the step under way.
        self.committing: dict[str, tuple[MergeOutput, PendingCommit]] = {}
        self.settled = threading.Event()  # the first assignment is adopted (RawLoop waits)
        self.settled_at: float | None = None  # time.monotonic() it was
        self._assigned = False

    def run_loop(self) -> None:
        self._consumer = self.settings.loop_consumer(
            group_id=self.settings.merge_group(self.contract),
            client_id=self.settings.group_client_id(self.contract),
            max_poll_records=5000,
        )
        subscribe(self._consumer, self.topics, _Listener(self))
        try:
            while not self.stopping.is_set():
                polled = self._consumer.poll(timeout_ms=POLL_MS)
                self.check_listener()
                with self.lock:
                    restored = self.adopt_pending()
                    self._settle()
                    self.resumed()
                    self._feed({tp: rs for tp, rs in polled.items() if tp not in restored})
                    self.step(list(self.owned))
            with self.lock:
                self.step(list(self.owned), force_state=True)
        except BaseException:
            self.discarding = True  # close() below may revoke: give views up, save nothing
            raise
        finally:
            self._consumer.close(autocommit=False)
            for _, producer in self.owned.values():
                abandon(producer, 10)

    def _feed(self, polled: Mapping[TopicPartition, list[Any]]) -> None:
        for tp, records in polled.items():
            if tp.topic in self.owned:  # else revoked meanwhile: the next owner reads it
                stage = self.owned[tp.topic][0]
                for r in records:
                    stage.feed(r.offset, r.key, r.value)

    def on_assigned(self, tps: Iterable[TopicPartition]) -> None:
        """Pause the new views until adopted; the group has given this loop its share."""
        super().on_assigned(tps)
        self._assigned = True

    def _settle(self) -> None:
        """After the first assignment is adopted (maybe no view at all): let the raw loop fold."""
        if self._assigned and not self.pending and not self.settled.is_set():
            self.settled_at = time.monotonic()
            self.settled.set()

    def step(
        self,
        topics: Iterable[str],
        *,
        force_state: bool = False,
        timeout_s: float = COMMIT_TIMEOUT_S,
    ) -> None:
        """Release what is ready in each view of ``topics``, one transaction per view with its
        merger state; every view's commit is begun as soon as its records are sent, then all
        are awaited (one deadline): they run together, not one after the other."""
        deadline = Deadline(timeout_s)
        self.committing = {}
        try:
            for topic in topics:
                producer = self.owned[topic][1]
                output = self._send(topic, force_state=force_state, deadline=deadline)
                if output is not None:
                    self.committing[topic] = (output, begin_commit(producer))
        except BaseException:
            self._await_commits(deadline, quiet=True)  # the error raised is the first one
            raise
        self._await_commits(deadline)

    def _send(self, topic: str, *, force_state: bool, deadline: Deadline) -> MergeOutput | None:
        """Begin the view's transaction and send its output (None: nothing to commit)."""
        stage, producer = self.owned[topic]
        output = stage.step(force_state=force_state)
        if output is None:
            return None
        producer.begin_transaction()
        for r in output.records:
            producer.send(
                r.topic, key=r.key, value=r.value, headers=r.headers, partition=r.partition
            )
        if self.fault is not None:
            producer.flush(timeout=deadline.remaining())  # the records reach the log, uncommitted
            self.fault(topic, output)
        return output

    def _await_commits(self, deadline: Deadline, *, quiet: bool = False) -> None:
        """Wait for every commit begun; the views that committed count their releases."""
        failure: Exception | None = None
        for topic, (output, result) in self.committing.items():
            try:
                done_at = await_commit(result, deadline.remaining())
            except Exception as exc:  # the others may have committed: count them first
                failure = failure or exc
                continue
            stage = self.owned[topic][0]
            stage.committed(output, at=done_at)  # the delay ends when Kafka committed
            if self.progress is not None:
                self.progress(stage)
        self.committing = {}
        if failure is not None and not quiet:
            raise failure

    def adopt(self, tps: list[TopicPartition]) -> None:
        """Own the views of ``tps``: fence older owners, load committed state, seek."""
        stages = [self.factory(tp.topic) for tp in tps]
        producers = self._fence(stages)
        try:
            states = self._load_states({self.state_topics[tp.topic] for tp in tps})
        except BaseException:
            for producer in producers:
                abandon(producer, 1)
            raise
        for tp, stage, producer in zip(tps, stages, producers, strict=True):
            value = states.get((self.state_topics[tp.topic], state_key(stage.view)))
            self._consumer.seek(tp, stage.restore(value))
            self.owned[tp.topic] = (stage, producer)
        if self.metrics is not None:
            self.metrics.held.labels(self.contract, "merge").set(len(self.owned))
        _log.info("views of %s owned: %d", self.contract, len(self.owned))

    def _fence(self, stages: list[MergeStage]) -> list[KafkaProducer]:
        """Each view's transactional producer, its older owners fenced: all views at once,
        since each fence is round trips to the broker (on its producer's network thread)."""
        if not stages:
            return []
        workers = min(len(stages), MAX_PARALLEL_FENCES)
        with ThreadPoolExecutor(workers, thread_name_prefix=f"{self.name}-fence") as pool:
            futures = [pool.submit(self._fenced_producer, stage) for stage in stages]
        producers = [f.result() for f in futures if f.exception() is None]
        error = next((e for f in futures if (e := f.exception()) is not None), None)
        if error is not None:
            for producer in producers:
                abandon(producer, 1)
            raise error
        return producers

    def _fenced_producer(self, stage: MergeStage) -> KafkaProducer:
        producer = self.settings.producer(
            transactional_id=f"respublica.{stage.contract.id}.{stage.view}.merger"
        )
        try:
            producer.init_transactions()  # fences a zombie owner, aborts its open transaction
            for topic in (stage.encoder.topic, stage.state_topic):
                producer.partitions_for(topic)  # metadata now, not in the first transaction
        except BaseException:
            abandon(producer, 1)
            raise
        return producer

    def _load_states(self, state_topics: Iterable[str]) -> dict[tuple[str, bytes], bytes]:
        # After init_transactions, and up to the high watermark: a state committed after a
        # transaction that is still open lies past the last stable offset.
        found: dict[tuple[str, bytes], bytes] = {}
        for topic in state_topics:
            for record in read_topic(self.settings, topic, wait_open_transactions=True):
                if record.key is not None and record.value is not None:
                    found[(topic, record.key)] = record.value
        return found

    def revoke(self, tps: Iterable[TopicPartition]) -> None:
        """Give views up: save state (shortens the next owner's replay), close producers.

        The views' commits run together within one ``REVOKE_FLUSH_TIMEOUT_S`` (the callback
        blocks heartbeats); a view not saved by then is given up unsaved, like every view
        after an error.
        """
        views = [tp.topic for tp in tps if tp.topic in self.owned]
        bug: Exception | None = None
        try:
            if not self.discarding and views:
                self.step(views, force_state=True, timeout_s=REVOKE_FLUSH_TIMEOUT_S)
        except Exception as exc:  # the next owner replays from the committed state
            _log.warning("saving merger state on revoke failed (%s)", type(exc).__name__)
            if not is_outage(exc):
                bug = exc
        finally:
            for topic in views:
                abandon(self.owned.pop(topic)[1], 1 if self.discarding else 5)
        if self.metrics is not None:
            self.metrics.held.labels(self.contract, "merge").set(len(self.owned))
        if bug is not None:
            raise bug  # kept by the listener; the loop stops on it

    def drop_all(self) -> None:
        """After an outage: give every view up unsaved; the next owner (maybe this loop,
        after it rejoins) fences the producers and restores the committed state."""
        super().drop_all()
        with self.lock:
            for topic in list(self.owned):
                abandon(self.owned.pop(topic)[1], 1)
            if self.metrics is not None:
                self.metrics.held.labels(self.contract, "merge").set(0)
