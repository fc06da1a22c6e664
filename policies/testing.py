"""Run events through a contract without Kafka: in-memory drivers of the policy core.

The runtime (``broker/``) reads the raw partitions of a stream, folds each partition with a
``PartitionAggregator``, ships the partials to one ``WindowMerger`` per view and publishes what
it releases. ``run_stream`` does the same in memory and deterministically: records keyed by
subject over N partitions (``TestingSource``), delivered in batches, partials drained after
every batch (optionally only those of closed windows, as the worker does, and re-delivered at
random, as the at-least-once internal topic may), watermarks observed, ``END_OF_STREAM`` at
the end. The result (``StreamRun``, the testing sink) holds what the public topic would hold.
``oracle_releases`` computes the same releases with the batch oracle (``policies.oracle``):
the two must be equal whenever no event arrives later than the allowed lateness. Time that
advances without data (an idle partition) comes from an injected ``TestingClock``, never from
the wall clock. Usage, with ``records`` a list of decoded ``vehicle_events``::

    [contract] = load_contracts([examples_dir() / "micromobility.yaml"], now=now)
    view = compile_contract(contract, keyring=KeyRing())["availability"]
    arrived = arrival_order(records, "timestamp", lateness_ms=300_000, seed=1)
    run = run_stream(view, arrived, "vehicle_id", partitions=4, batch=50, redeliver_seed=1)
    assert run.outcome.late == 0
    assert run.releases == oracle_releases(view, records)

``run_contract`` runs every view of a contract at once, each over the events of its stream.
"""

from __future__ import annotations

import json
import random
import zlib
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from policies.aggregate import Aggregator, Partial
from policies.base import END_OF_STREAM, ProcessOutcome, Record, Release
from policies.compile import CompiledView, compile_contract
from policies.oracle import evaluate_view
from policies.pseudonymise import KeyRing, canonical_id
from policies.window import Merger

Batch = list[tuple[int, Record]]
"""``(offset, record)`` pairs of one partition, in offset order."""


def partition_of(subject: Any, partitions: int) -> int:
    """The partition of a record keyed by ``subject``: a stable hash modulo the count.

    A stand-in for Kafka's key partitioner (not the same hash) over the key the validator
    writes, ``canonical_id(subject)``: every record of one subject, however spelt, lands in
    one partition, which is what the aggregation relies on.
    """
    return zlib.crc32(canonical_id(subject).encode()) % partitions


def arrival_order(
    records: Sequence[Record], time_field: str, lateness_ms: int, seed: int
) -> list[Record]:
    """The records out of event-time order, yet none later than ``lateness_ms``.

    Each record is delayed by a random jitter of at most ``lateness_ms``; so when it arrives,
    no record seen so far is more than ``lateness_ms`` ahead of it, and it is never late.
    """
    rng = random.Random(seed)  # noqa: S311 - a reproducible test order, not a secret
    return sorted(records, key=lambda r: r[time_field] + rng.randrange(lateness_ms + 1))


@dataclass(frozen=True)
class TestingSource:
    """The raw topic of one stream: records keyed by subject over partitions ``p0``, ``p1``…"""

    __test__ = False  # not a pytest test class, despite the name

    partitions: tuple[tuple[tuple[int, Record], ...], ...]

    @classmethod
    def of(
        cls, records: Sequence[Record], subject_field: str, partitions: int = 1
    ) -> TestingSource:
        """Records in arrival order, each appended to its subject's partition."""
        queues: list[list[tuple[int, Record]]] = [[] for _ in range(partitions)]
        for record in records:
            queue = queues[partition_of(record[subject_field], partitions)]
            queue.append((len(queue), record))
        return cls(tuple(tuple(queue) for queue in queues))

    @property
    def sources(self) -> list[str]:
        """The source names the aggregators and the merger use, one per partition."""
        return [f"p{i}" for i in range(len(self.partitions))]

    def rounds(self, batch: int) -> Iterator[list[Batch]]:
        """Delivery rounds: in each, the next ``batch`` records of every partition (maybe none)."""
        longest = max((len(p) for p in self.partitions), default=0)
        for lo in range(0, longest, batch):
            yield [list(p[lo : lo + batch]) for p in self.partitions]


@dataclass
class TestingClock:
    """A clock the test moves, in ms since the epoch (bytewax's ``TimeTestingGetter``).

    ``run_stream`` reads it for the one rule of the core that needs a clock: a partition with
    no record in a delivery round is idle, and its watermark moves to ``clock() − lateness``
    (``policies/base.py``). The driver calls ``tick`` after every round.
    """

    __test__ = False  # not a pytest test class, despite the name

    now_ms: int
    step_ms: int = 0
    """How far each delivery round moves the clock."""

    def __call__(self) -> int:
        """The current time."""
        return self.now_ms

    def advance(self, ms: int) -> None:
        """Move the clock on by ``ms``."""
        self.now_ms += ms

    def tick(self) -> None:
        """One delivery round has passed."""
        self.advance(self.step_ms)


@dataclass
class StreamRun:
    """What a streamed run produced (the testing sink): releases in release order."""

    releases: list[Release] = field(default_factory=list)
    outcome: ProcessOutcome = field(default_factory=ProcessOutcome)
    stale_partials: int = 0
    """Partials that reached the merger after their window was released (dropped)."""


class _Redelivery:
    """Merges partials, and with a seed re-merges an earlier drain at random moments."""

    def __init__(self, merger: Merger, seed: int | None) -> None:
        self.merger = merger
        self.seed = seed
        self.rng = random.Random(seed)  # noqa: S311 - reproducible, not a secret
        self.history: list[list[Partial]] = []

    def send(self, partials: list[Partial]) -> None:
        self.history.append(partials)
        self.merger.merge(partials)
        if self.seed is not None and self.rng.random() < 0.5:
            self.merger.merge(self.rng.choice(self.history))


def run_stream(
    view: CompiledView,
    records: Sequence[Record],
    subject_field: str,
    *,
    partitions: int = 1,
    batch: int = 5,
    redeliver_seed: int | None = None,
    finish: bool = True,
    closed_only: bool = False,
    clock: TestingClock | None = None,
    heartbeat: int | None = None,
    restart_seed: int | None = None,
) -> StreamRun:
    """Feed records (in the given arrival order) through partitions; release as we go.

    With ``closed_only``, sources send partials the way the worker does: only once their
    window is closed for the source (``drain_closed``), and all the rest at the end.
    With ``redeliver_seed``, earlier drains of partials are re-delivered at random moments
    (at-least-once delivery of the internal partials topic).
    With ``finish`` (the default), every source ends with ``END_OF_STREAM``; without it, the
    windows still open stay unreleased.
    With ``clock``, a partition idle for a round observes ``clock() − lateness``.
    With ``heartbeat``, every partition ends with a heartbeat (``Aggregator.advance``): no later
    record of it has an event time below ``heartbeat`` (before the end of stream, if any).
    With ``restart_seed``, the merger is replaced at random rounds by a fresh one restored from
    its JSON snapshot, as a restarted worker would be (what it released is kept: in the worker
    the snapshot commits with the releases).
    """
    source = TestingSource.of(records, subject_field, partitions)
    aggs = [view.partition_state(s) for s in source.sources]
    merger = view.merger(source.sources)
    delivery = _Redelivery(merger, redeliver_seed)
    restarts = random.Random(restart_seed)  # noqa: S311 - reproducible, not a secret
    run = StreamRun()
    for deliveries in source.rounds(batch):
        for agg, delivered in zip(aggs, deliveries, strict=True):
            run.outcome.add(agg.process(delivered))
            delivery.send(agg.drain_closed() if closed_only else agg.drain_partials())
            merger.observe_watermark(agg.source, agg.watermark)
            if clock is not None and not delivered:
                merger.observe_watermark(agg.source, clock() - view.spec.lateness_ms)
        run.releases.extend(merger.release_ready())
        if restart_seed is not None and restarts.random() < 0.3:
            merger = delivery.merger = _restarted(view, source.sources, merger)
        if clock is not None:
            clock.tick()
    if heartbeat is not None:
        for agg, partition in zip(aggs, source.partitions, strict=True):
            agg.advance(len(partition), heartbeat)
            delivery.send(agg.drain_closed() if closed_only else agg.drain_partials())
            merger.observe_watermark(agg.source, agg.watermark)
        run.releases.extend(merger.release_ready())
    if finish:
        run.releases.extend(_end_of_stream(aggs, merger, closed_only))
    run.stale_partials = merger.stale_partials
    return run


def _restarted(view: CompiledView, sources: Sequence[str], merger: Merger) -> Merger:
    """A fresh merger restored from ``merger``'s snapshot, through JSON like the state topic."""
    fresh = view.merger(sources)
    fresh.restore(json.loads(merger.snapshot_json()))
    return fresh


def _end_of_stream(aggs: Sequence[Aggregator], merger: Merger, closed_only: bool) -> list[Release]:
    """Every source ends: what it still holds is sent, and every window is released."""
    for agg in aggs:
        if closed_only:
            merger.merge(agg.drain_closed(final=True))
        merger.observe_watermark(agg.source, END_OF_STREAM)
    return merger.release_ready()


def run_contract(
    contract: Any,
    events: Mapping[str, Sequence[Record]],
    *,
    keyring: KeyRing,
    noise_key: bytes | None = None,
    partitions: int = 1,
    batch: int = 5,
    redeliver_seed: int | None = None,
    closed_only: bool = False,
) -> dict[str, StreamRun]:
    """``run_stream`` for every view of a loaded contract; ``events`` maps stream → records.

    Each view reads the events of its stream, keyed by the stream's subject field. Compare
    with ``policies.oracle.evaluate(contract, events, keyring=..., noise_key=...)`` using the
    same ``keyring``.
    """
    runs = {}
    for name, view in compile_contract(contract, keyring=keyring, noise_key=noise_key).items():
        stream = contract.stream(contract.view(name).stream)
        runs[name] = run_stream(
            view,
            events.get(stream.name, []),
            stream.subject,
            partitions=partitions,
            batch=batch,
            redeliver_seed=redeliver_seed,
            closed_only=closed_only,
        )
    return runs


def oracle_releases(view: CompiledView, records: Sequence[Record]) -> list[Release]:
    """The batch oracle's releases of ``view`` (same keys, same noise key), in time order."""
    return evaluate_view(view.spec, records, view.pseudonymiser, view.noise_key)
