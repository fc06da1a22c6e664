"""Drop repeated event ids within a stream's lateness horizon, in bounded memory.

An event older than ``now - allowed_lateness`` is rejected as TOO_LATE before the duplicate
check, so an id only has to be remembered until ``event_time + allowed_lateness``: after that
a repeat is late anyway. Ids are kept in time buckets keyed by that expiry; whole buckets are
dropped as the clock passes them, so memory is bounded by the events of one horizon (and by
``max_entries`` as a hard cap, dropping the oldest bucket first).

Scope, on purpose: the filter lives in one process and is lost on restart, and two validator
instances do not share it. That is enough to stop a provider's retries and replays at the
door; it is not what guarantees "nothing counted twice": the runtime's aggregation is
idempotent per event id and window, so a duplicate that slips through here cannot change a
published number.

Ids are stored as Python ``hash()`` values (64-bit, salted per process): a fraction of the
memory of the strings, and the raw ids are not retained. A collision would drop one genuine
event as a duplicate with probability about n²/2⁶⁵ (3e-8 at a million ids in the horizon).
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable
from datetime import timedelta

DEFAULT_MAX_ENTRIES = 2_000_000
_MIN_BUCKET_MS = 1_000


class DuplicateFilter:
    """A bounded, time-evicted set of the event ids of one stream."""

    def __init__(self, horizon: timedelta, *, max_entries: int = DEFAULT_MAX_ENTRIES,
                 buckets: int = 32) -> None:
        self._horizon_ms = max(0, int(horizon.total_seconds() * 1000))
        self._bucket_ms = max(_MIN_BUCKET_MS, self._horizon_ms // max(1, buckets))
        self._max_entries = max_entries
        self._buckets: dict[int, set[int]] = {}
        self._size = 0
        self._next_eviction_ms: float = float("inf")
        self.forced_evictions = 0  # ids dropped early because of max_entries

    def __len__(self) -> int:
        return self._size

    def seen(self, event_id: Hashable, *, event_time_ms: int, now_ms: int) -> bool:
        """True if the id was seen within the horizon; otherwise remember it and say False."""
        if now_ms >= self._next_eviction_ms:
            self._evict(now_ms)
        key = hash(event_id)
        for ids in self._buckets.values():
            if key in ids:
                return True
        index = (event_time_ms + self._horizon_ms) // self._bucket_ms
        bucket = self._buckets.get(index)
        if bucket is None:
            self._buckets[index] = {key}
            self._next_eviction_ms = min(self._next_eviction_ms, (index + 1) * self._bucket_ms)
        else:
            bucket.add(key)
        self._size += 1
        if self._size > self._max_entries:
            self._drop_oldest()
        return False

    def forget(self, event_ids: Iterable[Hashable]) -> None:
        """Drop ids remembered by ``seen``: their events were never written (a failed send),
        so a retry must not be rejected as a duplicate of itself."""
        for event_id in event_ids:
            key = hash(event_id)
            for ids in self._buckets.values():
                if key in ids:
                    ids.discard(key)
                    self._size -= 1
                    break

    def _evict(self, now_ms: int) -> None:
        for index in [i for i in self._buckets if (i + 1) * self._bucket_ms <= now_ms]:
            self._size -= len(self._buckets.pop(index))
        self._reset_next_eviction()

    def _drop_oldest(self) -> None:
        oldest = min(self._buckets)
        dropped = len(self._buckets.pop(oldest))
        self._size -= dropped
        self.forced_evictions += dropped
        self._reset_next_eviction()

    def _reset_next_eviction(self) -> None:
        self._next_eviction_ms = (
            (min(self._buckets) + 1) * self._bucket_ms if self._buckets else float("inf")
        )
