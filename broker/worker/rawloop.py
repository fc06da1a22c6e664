"""Stage 1 of a worker: ``RawLoop`` folds its raw partitions into partials and checkpoints
(``broker.worker.loops`` says how the two loops share outages, rebalances and locks)."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterable, Mapping
from typing import Any

from kafka import KafkaProducer, TopicPartition
from kafka.structs import OffsetAndMetadata

from broker.deadline import Deadline
from broker.kafka.clients import (
    RAW_FETCH_BYTES,
    WorkerClients,
    abandon,
    is_outage,
    read_topic,
    subscribe,
)
from broker.kafka.internal import CHECKPOINT_PREFIX, Checkpoint
from broker.worker.flow import FlowControl
from broker.worker.keystore import KeyStore
from broker.worker.loops import (
    FLUSH_TIMEOUT_S,
    KEYS_REFRESH_S,
    MERGER_WAIT_S,
    POLL_MS,
    REVOKE_FLUSH_TIMEOUT_S,
    ConsumeLoop,
    LoopListener,
    send_all,
)
from broker.worker.metrics import WorkerMetrics
from broker.worker.partials import PartialsStage

_log = logging.getLogger(__name__)


class RawLoop(ConsumeLoop):
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
        subscribe(self._consumer, sorted(self.stages), LoopListener(self))
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
        send_all(self._producer, out, timeout_s)
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
