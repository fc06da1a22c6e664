"""Cut a mixed stream of good and bad items into the demo's request batches."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, Protocol, TypeVar

BATCH = 500


class Mixed(Protocol):
    """An item of a mixed stream: a good record, or ``None`` for a fault."""

    @property
    def record(self) -> dict[str, Any] | None:
        """The good record (or MDS object), None for a bad payload."""
        ...


T = TypeVar("T", bound=Mixed)


def batches(items: Iterator[T], span_ms: int, time_field: str) -> Iterator[list[T]]:
    """Batches of at most ``BATCH`` items whose good records span at most ``span_ms``.

    The gateway's replay clock is the latest time of a batch: a span of at most half the
    stream's lateness keeps the oldest good record of a batch within it.
    """
    batch: list[T] = []
    first: int | None = None
    for item in items:
        record = item.record
        t = record[time_field] if record is not None else None
        if batch and (
            len(batch) >= BATCH or (t is not None and first is not None and t - first > span_ms)
        ):
            yield batch
            batch, first = [], None
        batch.append(item)
        if t is not None and first is None:
            first = t
    if batch:
        yield batch
