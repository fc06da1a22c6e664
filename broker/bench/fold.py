"""Micro-benchmark of the raw loop's own work: ``python -m broker.bench.fold --events N``.

What a policy worker does per raw record once it is polled and before its partials are sent:
Avro decode, filter, generalisation, pseudonymisation, folding into partials, and the partials'
and checkpoints' encoding (``broker.worker.partials.PartialsStage.process`` + ``checkpoint``).
No Kafka: the bench's simulated events (``broker.bench.preload``) are Avro-encoded once, split
over partitions by their key as Kafka's default partitioner would be approximately, and fed
in batches like the raw loop's polls. Prints the CPU µs per event of the best of ``--repeat``
runs (each on a fresh stage and key ring; encoding the input is not timed), with the
collector tuned as in a worker (``broker.worker.app.tune_gc``).
"""

from __future__ import annotations

import argparse
import time
import zlib
from collections.abc import Sequence
from typing import Any

from broker.bench.preload import _encoded, load_source
from broker.worker.app import tune_gc
from broker.worker.metrics import WorkerMetrics
from broker.worker.partials import PartialsStage, RawRecord
from contracts.model import Contract
from policies.compile import compile_contract
from policies.pseudonymise import KeyRing

PARTITIONS = 4
POLL_RECORDS = 2000  # the worker's max_records
CHECKPOINT_EVERY = 20_000  # raw records between checkpoints (about 1 s of the worker's work)

Partitioned = dict[str, dict[int, list[RawRecord]]]


def _partitioned(contract: Contract, events: dict[str, list[dict[str, Any]]]) -> Partitioned:
    """Raw records per raw topic and partition, in offset order."""
    out: Partitioned = {}
    for name, rows in events.items():
        stream = contract.stream(name)
        if not contract.views_of(stream):
            continue
        by_partition: dict[int, list[RawRecord]] = {p: [] for p in range(PARTITIONS)}
        for record in _encoded(contract, name, rows):
            part = by_partition[zlib.crc32(record.key or b"") % PARTITIONS]
            part.append(RawRecord(len(part), record.value))
        out[contract.topic_raw(stream)] = by_partition
    return out


def _stages(contract: Contract) -> dict[str, PartialsStage]:
    views = compile_contract(contract, keyring=KeyRing(token_bytes=lambda n: bytes(n)))
    metrics = WorkerMetrics()
    stages = {}
    for stream in contract.streams:
        mine = {v.name: views[v.name] for v in contract.views_of(stream)}
        if mine:
            topics = {name: f"partials.{name}" for name in mine}
            stage = PartialsStage(contract, stream.name, mine, topics, metrics, clock=lambda: 0.0)
            for p in range(PARTITIONS):
                stage.restore(p, {})
            stages[contract.topic_raw(stream)] = stage
    return stages


def run_once(contract: Contract, data: Partitioned) -> tuple[float, int, int]:
    """(CPU seconds, records, output bytes) of one pass over ``data`` with fresh stages."""
    stages = _stages(contract)
    cursors = {(t, p): 0 for t, parts in data.items() for p in parts}
    records = out_bytes = since = 0
    began = time.process_time()
    while cursors:
        for (topic, p), at in list(cursors.items()):
            batch: Sequence[RawRecord] = data[topic][p][at : at + POLL_RECORDS // PARTITIONS]
            if not batch:
                del cursors[(topic, p)]
                continue
            stages[topic].process(p, batch)
            cursors[(topic, p)] = at + len(batch)
            records += len(batch)
            since += len(batch)
        if since >= CHECKPOINT_EVERY or not cursors:
            since = 0
            for topic, stage in stages.items():
                for p in data[topic]:
                    out = stage.checkpoint(p, force=not cursors)
                    out_bytes += sum(len(r.value or b"") for r in out)
    return time.process_time() - began, records, out_bytes


def main(argv: list[str] | None = None) -> None:
    """Command-line entry: one line per run, then the best."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--events", type=int, default=100_000, help="main-stream events")
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args(argv)
    source = load_source(None, args.events)
    contract = source.contract
    data = _partitioned(contract, source.events)
    tune_gc()  # the collector as a worker process sets it
    best = None
    for _ in range(args.repeat):
        cpu, records, out_bytes = run_once(contract, data)
        us = 1e6 * cpu / records
        best = us if best is None else min(best, us)
        print(f"records={records} cpu_s={cpu:.2f} us/record={us:.2f} out_bytes={out_bytes}")  # noqa: T201
    print(f"best us/record={best:.2f}")  # noqa: T201


if __name__ == "__main__":
    main()
