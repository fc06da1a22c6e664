"""Stage 1: raw partitions of one stream → partials and checkpoints on each view's partials topic.

For every raw partition (a *source*, ``p<n>``) the stage holds one ``Aggregator`` per view of
the stream. ``process`` decodes a batch once and folds it into every view; ``checkpoint``
drains the partials of windows the source has closed (each is sent once: an open window
cannot be released anyway, and the checkpoint's state carries it across restarts) and
appends, after them, one checkpoint per view::

    partials|<source>|<position>|<n>   up to 1,000 partials (``internal.encode_partials``)
    checkpoint|<source>                {"position", "watermark", "eos", "state", ...}

Batching matters: most groups of a fine grid hold a handful of events, so a record per
partial cost a Kafka record per few events on both sides of the topic.

Both go to the view's single-partition partials topic through one idempotent producer, so a
durable checkpoint implies durable partials before it, and the merger sees a source's partials
before the watermark that follows them. ``restore`` reloads a checkpoint: the raw consumer then
resumes at ``position + 1`` (the aggregator skips anything at or below ``position`` anyway).

End of stream: a raw record with header ``respublica.control: end-of-stream`` (raw topics are
internal; only replays and tests write it) sets the source's watermark to ``END_OF_STREAM``
(the checkpoint says ``"eos": true`` beside the fold's own watermark), which releases every
window once all sources said so. A heartbeat (``respublica.control:
watermark``, written by the validator to every raw partition) advances every view's watermark
of the partition to its floor, in offset order (``Aggregator.advance``): the records before it
are folded first.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Protocol

import orjson

from broker.kafka.internal import (
    CONTROL_HEADER,
    END_OF_STREAM_MARK,
    Checkpoint,
    checkpoint_key,
    encode_partials,
    heartbeat_floor,
    partials_key,
    source_name,
)
from broker.kafka.publish import OutRecord
from broker.kafka.serde import SerializationError, framed_decoder, schema_id
from broker.worker.flow import MIN_LEAD_MS
from broker.worker.metrics import WorkerMetrics
from contracts.model import Contract
from contracts.policy_hash import short_policy_hash
from policies.aggregate import Aggregator
from policies.base import END_OF_STREAM, NO_WATERMARK, ProcessOutcome, Record
from policies.compile import CompiledView

PARTIALS_PER_RECORD = 1000

_log = logging.getLogger(__name__)


class RawLike(Protocol):
    """What the stage reads of a consumed raw record (a kafka-python ``ConsumerRecord`` is
    one, so the loop hands its records over without copying them)."""

    @property
    def offset(self) -> int: ...

    @property
    def value(self) -> bytes | None: ...

    @property
    def headers(self) -> Sequence[tuple[str, bytes]]: ...


@dataclass(frozen=True, slots=True)
class RawRecord:
    """A raw record built by hand (tests, replays): what the stage needs of one."""

    offset: int
    value: bytes | None
    headers: Sequence[tuple[str, bytes]] = ()


@dataclass
class _Source:
    """One raw partition: an aggregator per view, and whether its stream has ended."""

    aggregators: dict[str, Aggregator]
    eos: bool = False
    dirty: bool = False
    # Per view, what became of every record up to the aggregator's position (replays skipped):
    # checkpointed so that the auditor can reconcile late/filtered/outside/duplicate/bounded across
    # restarts.
    counts: dict[str, ProcessOutcome] = field(default_factory=dict)


def _is_end_of_stream(headers: Sequence[tuple[str, bytes]]) -> bool:
    return any(k == CONTROL_HEADER and v == END_OF_STREAM_MARK for k, v in headers)


class PartialsStage:
    """Stage 1 of one (contract, stream); plain Python, driven by ``broker.worker.loops``."""

    def __init__(
        self,
        contract: Contract,
        stream: str,
        views: Mapping[str, CompiledView],
        partials_topics: Mapping[str, str],
        metrics: WorkerMetrics,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.contract = contract
        self.stream = contract.stream(stream)
        self.views = dict(views)
        # How far a partition may run ahead of the slowest in event time (flow control):
        # twice the longest window plus lateness of the views, at least a day (see
        # ``broker.worker.flow.MIN_LEAD_MS``).
        span = (
            max((contract.view(name).window for name in self.views), default=timedelta(0))
            + self.stream.allowed_lateness
        )
        self.lead_ms = max(2 * int(span.total_seconds() * 1000), MIN_LEAD_MS)
        self.partials_topics = dict(partials_topics)
        self.metrics = metrics
        self.clock = clock
        self.raw_topic = contract.topic_raw(stream)
        self.policy_hash = short_policy_hash(contract)
        self._decode_value = framed_decoder(
            self.stream.avro_schema, schema_id(self.stream.raw_schema)
        )
        self._sources: dict[int, _Source] = {}

    @property
    def partitions(self) -> list[int]:
        """Raw partitions currently held."""
        return sorted(self._sources)

    def restore(self, partition: int, checkpoints: Mapping[str, Checkpoint | None]) -> int:
        """Hold a partition from its views' last checkpoints; returns the offset to resume at.

        Views of a stream can be checkpointed at different offsets (a crash between two
        checkpoint records): resume at the lowest, the others skip what they already folded.
        """
        source = source_name(partition)
        aggregators, eos, counts = {}, False, {}
        for name, view in self.views.items():
            agg = view.partition_state(source)
            counts[name] = ProcessOutcome()
            found = checkpoints.get(name)
            if found is not None:
                agg.restore(found.state)
                eos = eos or found.eos
                counts[name] = _outcome(found.counts)
            aggregators[name] = agg
        self._sources[partition] = _Source(aggregators, eos=eos, counts=counts)
        return self.resume_offset(partition)

    def watermark(self, partition: int) -> int:
        """The partition's watermark: the lowest of its views (``END_OF_STREAM`` once ended)."""
        source = self._sources[partition]
        if source.eos:
            return END_OF_STREAM
        return min((agg.watermark for agg in source.aggregators.values()), default=NO_WATERMARK)

    def resume_offset(self, partition: int) -> int:
        """The next offset to read: after the lowest position of the partition's views."""
        return min(agg.position for agg in self._sources[partition].aggregators.values()) + 1

    def release(self, partition: int) -> None:
        """Forget a partition (revoked); checkpoint it first if it must survive."""
        self._sources.pop(partition, None)

    def process(self, partition: int, records: Sequence[RawLike]) -> None:
        """Decode a batch once and fold it into every view of the partition."""
        source = self._sources[partition]
        batch: list[tuple[int, Record]] = []
        add, decode = batch.append, self._decode_value  # the per-record path: locals
        for raw in records:
            if raw.headers:
                if _is_end_of_stream(raw.headers):
                    source.eos = True
                    continue
                floor = heartbeat_floor(raw.headers)
                if floor is not None:
                    self._fold(source, batch)  # what came before the heartbeat, first
                    batch = []
                    add = batch.append
                    for agg in source.aggregators.values():
                        agg.advance(raw.offset, floor)
                    continue
            value = raw.value
            if value is None:
                self._undecodable()
                continue
            try:
                add((raw.offset, decode(value)))
            except SerializationError:
                self._undecodable()
        self._fold(source, batch)
        source.dirty = True

    def _fold(self, source: _Source, batch: list[tuple[int, Record]]) -> None:
        for name, agg in source.aggregators.items():
            outcome = agg.process(batch)
            source.counts.setdefault(name, ProcessOutcome()).add(outcome)
            self.metrics.outcome(self.contract.id, name, outcome)

    def _undecodable(self) -> None:
        # Raw topics hold validated records: this is a bug or a foreign writer. Skip it (never
        # log the bytes) and count it, rather than stop every view of the stream.
        self.metrics.undecodable.labels(self.contract.id, self.stream.name).inc()

    def checkpoint(self, partition: int, *, force: bool = False) -> list[OutRecord]:
        """Drained partials of every view, each view's checkpoint after its partials."""
        source = self._sources[partition]
        if not (source.dirty or force):
            return []
        out: list[OutRecord] = []
        now = self.clock()
        for name, agg in source.aggregators.items():
            topic = self.partials_topics[name]
            parts = agg.drain_closed(final=source.eos)
            for chunk in range(0, len(parts), PARTIALS_PER_RECORD):
                value = encode_partials(agg.source, parts[chunk : chunk + PARTIALS_PER_RECORD])
                out.append(
                    OutRecord(topic, partials_key(agg.source, agg.position, chunk), value, [])
                )
            counts = source.counts.get(name, ProcessOutcome())
            out.append(
                OutRecord(
                    topic,
                    checkpoint_key(agg.source),
                    self._checkpoint_value(agg, source.eos, now, counts),
                    [],
                )
            )
            self.metrics.checkpoints.labels(self.contract.id, name).inc()
        source.dirty = False
        return out

    def _checkpoint_value(
        self, agg: Aggregator, eos: bool, now: float, counts: ProcessOutcome
    ) -> bytes:
        return orjson.dumps(
            {
                "source": agg.source,
                "counts": {str(d): n for d, n in counts.by_disposition().items()},
                "position": agg.position,
                # The fold's own watermark, also after an end of stream: how far time has
                # passed decides which empty windows are reported (policies.window.Merger).
                "watermark": agg.watermark,
                "eos": eos,
                "state": agg.snapshot(),
                "policy_hash": self.policy_hash,
                "written_at": now,
            },
            option=orjson.OPT_SORT_KEYS,
        )


def _outcome(counts: Mapping[str, int]) -> ProcessOutcome:
    """The cumulative dispositions stored in a checkpoint (absent in older checkpoints: 0)."""
    return ProcessOutcome(
        folded=int(counts.get("folded", 0)),
        filtered=int(counts.get("filtered", 0)),
        late=int(counts.get("late", 0)),
        outside=int(counts.get("outside", 0)),
        duplicate=int(counts.get("duplicate", 0)),
        bounded=int(counts.get("bounded", 0)),
    )
