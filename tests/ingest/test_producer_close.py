"""The gateway's shutdown is bounded by its producer's: an idempotent aiokafka producer retries
a batch Kafka does not take for ever, and its ``stop()`` waits for every batch. Records of such
a batch were never acknowledged (their requests were answered 503), so nothing is lost by not
waiting; a gateway that cannot exit on SIGTERM would be worse."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence

import pytest

from broker.ingest import producer
from broker.ingest.producer import HealingWriter, KafkaHealth
from broker.kafka.writer import OutRecord


class StuckWriter:
    """A writer whose ``close`` never returns (a producer retrying a batch for ever)."""

    connected = True

    async def write(self, records: Sequence[OutRecord]) -> None:
        return None

    async def close(self) -> None:
        await asyncio.Event().wait()


async def test_close_returns_within_its_bound_when_the_producer_does_not(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(producer, "CLOSE_TIMEOUT_S", 0.5)
    writer = HealingWriter(StuckWriter(), KafkaHealth())
    started = time.monotonic()
    await asyncio.wait_for(writer.close(), 10)
    assert time.monotonic() - started < 5
