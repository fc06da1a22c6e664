"""Outboxes for unit tests: validated records land in a ``ListSink`` once "acknowledged"."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from broker.kafka.writer import OutRecord
from connectors.outbox import Outbox
from connectors.validate import Router
from tests.ingest.conftest import FakeClock, ListSink


class ListWriter:
    """A ``BatchWriter`` that appends every written record to a ``ListSink``."""

    def __init__(self, sink: ListSink) -> None:
        self.sink = sink
        self.connected = True

    async def write(self, records: Sequence[OutRecord]) -> None:
        for record in records:
            self.sink.send(record.topic, record.key, record.value, record.headers)

    async def close(self) -> None:
        """Nothing to release."""


def list_outbox(
    router: Router, contract_id: str, sink: ListSink, now: Callable[[], int], connector: str
) -> Outbox:
    """An ``Outbox`` whose validation clock is ``now`` and whose Kafka is ``sink``."""
    clock = FakeClock()
    clock.now_ms = now  # type: ignore[method-assign]
    writer = ListWriter(sink)
    return Outbox(router, contract_id, writer=lambda: writer, connector=connector, clock=clock)
