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
from connectors import outbox


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


class StepsWriter(StuckWriter):
    """A writer whose ``close`` finishes after ``steps`` turns of the event loop."""

    def __init__(self, steps: int) -> None:
        self.steps = steps

    async def close(self) -> None:
        for _ in range(self.steps):
            await asyncio.sleep(0)


@pytest.mark.parametrize("close", [producer._retire, outbox._close], ids=["gateway", "outbox"])
async def test_a_cancel_the_close_accepted_is_never_swallowed(close) -> None:  # noqa: ANN001
    # Python 3.11's asyncio.wait_for returns the inner result when a cancel lands on the very
    # turn its inner task finishes: a SIGTERM during a close was then lost. Whatever the turn
    # the cancel arrives on, a cancel the task accepted must end it cancelled.
    for steps in range(3):
        for before in range(4):
            task = asyncio.create_task(close(StepsWriter(steps)))
            for _ in range(before):
                await asyncio.sleep(0)
            if task.cancel():
                with pytest.raises(asyncio.CancelledError):
                    await task
            else:
                await task
