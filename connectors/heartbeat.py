"""Watermark heartbeats: what the ingest side (validator and gateway) writes to raw so that
windows close on time in quiet hours (``docs/architecture.md``, "Idle partitions").

A heartbeat is an empty control record on one raw partition saying that no later record there
has an event time below ``now - allowed lateness - margin``. The writer's own rule makes that
true for what it writes: it refuses (``TOO_LATE``) any event older than the lateness on the
same clock. The margin covers another writer's records still in flight (a second gateway, a
validator, a slow batch). Workers advance a quiet partition's watermark on it.
"""

from __future__ import annotations

from collections.abc import Iterable

from broker.kafka.internal import heartbeat_headers
from broker.kafka.writer import OutRecord
from connectors.validate import StreamValidator


def heartbeat_records(
    validators: Iterable[StreamValidator], now_ms: int, margin_ms: int
) -> list[OutRecord]:
    """One heartbeat per partition of every raw topic the validators write (the partition
    count is the contract's: the worker refuses to start on a topic that differs)."""
    records: list[OutRecord] = []
    done: set[str] = set()
    for validator in validators:
        if validator.raw_topic in done:
            continue
        done.add(validator.raw_topic)
        lateness_ms = int(validator.stream.allowed_lateness.total_seconds() * 1000)
        headers = heartbeat_headers(now_ms - lateness_ms - margin_ms)
        records += [
            OutRecord(validator.raw_topic, None, b"", headers, partition)
            for partition in range(validator.stream.partitions)
        ]
    return records
