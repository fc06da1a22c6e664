"""Stage 2 of a worker: ``MergeLoop`` merges its views' partials and commits each view's
releases and state in a transaction (``broker.worker.loops`` says how the two loops share
outages, rebalances and locks)."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from kafka import KafkaProducer, TopicPartition

from broker.deadline import Deadline
from broker.kafka.clients import (
    PendingCommit,
    WorkerClients,
    abandon,
    await_commit,
    begin_commit,
    is_outage,
    read_topic,
    subscribe,
)
from broker.kafka.internal import state_key
from broker.worker.loops import (
    COMMIT_TIMEOUT_S,
    MAX_PARALLEL_FENCES,
    POLL_MS,
    REVOKE_FLUSH_TIMEOUT_S,
    ConsumeLoop,
    LoopListener,
)
from broker.worker.merge import MergeOutput, MergeStage
from broker.worker.metrics import WorkerMetrics

_log = logging.getLogger(__name__)


MergeFactory = Callable[[str], MergeStage]
"""Builds the stage of a partials topic (fresh merger, to be restored)."""


class MergeLoop(ConsumeLoop):
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
        subscribe(self._consumer, self.topics, LoopListener(self))
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
