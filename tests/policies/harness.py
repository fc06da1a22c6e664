"""Drive compiled views like the runtime would: partitions, batches, drains, watermarks."""

from __future__ import annotations

import hashlib
import itertools
import random
import zlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from policies.aggregate import Partial
from policies.base import END_OF_STREAM, ProcessOutcome, Record, Release
from policies.compile import CompiledView
from policies.pseudonymise import KeyRing
from policies.spec import MeasureSpec, ViewSpec, field_dimension, round_dimension

T0 = 1_767_225_600_000  # 2026-01-01T00:00:00Z


def partition_of(subject: Any, partitions: int) -> int:
    """Like Kafka keyed by subject: a stable hash of the key modulo the partition count."""
    return zlib.crc32(str(subject).encode()) % partitions


@dataclass
class StreamRun:
    """What a streamed run produced."""

    releases: list[Release] = field(default_factory=list)
    outcome: ProcessOutcome = field(default_factory=ProcessOutcome)
    stale_partials: int = 0


def run_stream(view: CompiledView, records: Sequence[Record], subject_field: str, *,
               partitions: int = 1, batch: int = 5, redeliver_seed: int | None = None,
               finish: bool = True, closed_only: bool = False) -> StreamRun:
    """Feed records (in the given arrival order) through partitions; release as we go.

    With ``closed_only``, sources send partials the way the worker does: only once their
    window is closed for the source (``drain_closed``), and all the rest at the end.

    With ``redeliver_seed``, earlier batches of partials are re-delivered at random moments
    (at-least-once delivery of the internal partials topic).
    """
    sources = [f"p{i}" for i in range(partitions)]
    queues: list[list[tuple[int, Record]]] = [[] for _ in sources]
    for record in records:
        queue = queues[partition_of(record[subject_field], partitions)]
        queue.append((len(queue), record))
    aggs = [view.partition_state(s) for s in sources]
    merger = view.merger(sources)
    rng = random.Random(redeliver_seed)
    history: list[list[Partial]] = []
    run = StreamRun()
    longest = max(len(q) for q in queues)
    for lo in range(0, longest, batch):
        for agg, queue in zip(aggs, queues, strict=True):
            run.outcome.add(agg.process(queue[lo : lo + batch]))
            drained = agg.drain_closed() if closed_only else agg.drain_partials()
            history.append(drained)
            merger.merge(drained)
            if redeliver_seed is not None and rng.random() < 0.5:
                merger.merge(rng.choice(history))
            merger.observe_watermark(agg.source, agg.watermark)
        run.releases.extend(merger.release_ready())
    if finish:
        for agg in aggs:
            if closed_only:
                merger.merge(agg.drain_closed(final=True))
            merger.observe_watermark(agg.source, END_OF_STREAM)
        run.releases.extend(merger.release_ready())
    run.stale_partials = merger.stale_partials
    return run


def rich_spec(*, k: int = 2, lateness_ms: int = 10_000, delay_ms: int = 0,
              noise: Any = None) -> ViewSpec:
    """A hand-built view exercising every measure and non-spatial dimension."""
    return ViewSpec(
        contract="test-contract", view="rich", time_field="t", subject_field="who",
        window_ms=1_000, time_bucket_ms=500, lateness_ms=lateness_ms, rotation_ms=2_000, k=k,
        dimensions=(field_dimension("kind", "kind"), round_dimension("x", "x", 0)),
        measures=(
            MeasureSpec("events", "count"),
            MeasureSpec("people", "distinct_subjects"),
            MeasureSpec("urls", "distinct", "url"),
            MeasureSpec("total", "sum", "v"),
            MeasureSpec("avg", "mean", "v"),
            MeasureSpec("q", "quantiles", "v", (0.5, 0.9)),
        ) if noise is None else (
            MeasureSpec("events", "count"),
            MeasureSpec("people", "distinct_subjects"),
            MeasureSpec("urls", "distinct", "url"),
            MeasureSpec("total", "sum", "v"),
        ),
        filter_field="kind", filter_values=("a", "b"),
        delay_ms=delay_ms, noise=noise, pseudonymised=("url",),
    )


def seeded_ring(contract: str = "test-contract", seed: int = 1) -> KeyRing:
    """A ring with distinct, deterministic keys for every epoch the tests use.

    Keys are created in a fixed epoch order, so two rings built here hold the same key for the
    same epoch (as two workers sharing one key store would) and different keys per epoch.
    """
    counter = itertools.count(seed)
    ring = KeyRing(token_bytes=lambda n: hashlib.sha256(str(next(counter)).encode()).digest()[:n])
    epochs = sorted({T0 // r + i for r in (500, 2_000) for i in range(-2, 24)})
    for epoch in epochs:
        ring.key(contract, epoch)
    return ring
