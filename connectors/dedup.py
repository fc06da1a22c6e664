"""Drop repeated event ids within a stream's lateness horizon, in bounded memory.

An event older than ``now - allowed_lateness`` is rejected as TOO_LATE before the duplicate
check, so an id only has to be remembered until ``event_time + allowed_lateness``: after that
a repeat is late anyway. Ids are kept in time buckets keyed by that expiry; whole buckets are
dropped as the clock passes them, so memory is bounded by the events of one horizon (and by
``max_entries`` as a hard cap, dropping the oldest bucket first). One index maps every id to
its bucket, so a lookup is one dict probe whatever the number of buckets.

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

    def __init__(
        self, horizon: timedelta, *, max_entries: int = DEFAULT_MAX_ENTRIES, buckets: int = 32
    ) -> None:
        self._horizon_ms = max(0, int(horizon.total_seconds() * 1000))
        self._bucket_ms = max(_MIN_BUCKET_MS, self._horizon_ms // max(1, buckets))
        self._max_entries = max_entries
        # id hash -> bucket index; a bucket lists the hashes filed under it. A forgotten id
        # leaves a stale entry in its bucket list, skipped when the bucket is dropped.
        self._index: dict[int, int] = {}
        self._buckets: dict[int, list[int]] = {}
        self._next_eviction_ms: float = float("inf")
        self.forced_evictions = 0  # ids dropped early because of max_entries

    def __len__(self) -> int:
        return len(self._index)

    def seen(self, event_id: Hashable, *, event_time_ms: int, now_ms: int) -> bool:
        """True if the id was seen within the horizon; otherwise remember it and say False."""
        if now_ms >= self._next_eviction_ms:
            self._evict(now_ms)
        key = hash(event_id)
        index = self._index
        if key in index:
            return True
        bucket_index = (event_time_ms + self._horizon_ms) // self._bucket_ms
        index[key] = bucket_index
        bucket = self._buckets.get(bucket_index)
        if bucket is None:
            self._buckets[bucket_index] = [key]
            self._next_eviction_ms = min(
                self._next_eviction_ms, (bucket_index + 1) * self._bucket_ms
            )
        else:
            bucket.append(key)
        if len(index) > self._max_entries:
            self._drop_oldest()
        return False

    def forget(self, event_ids: Iterable[Hashable]) -> None:
        """Drop ids remembered by ``seen``: their events were never written (a failed send),
        so a retry must not be rejected as a duplicate of itself."""
        for event_id in event_ids:
            self._index.pop(hash(event_id), None)

    def _evict(self, now_ms: int) -> None:
        for bucket_index in [i for i in self._buckets if (i + 1) * self._bucket_ms <= now_ms]:
            self._drop(bucket_index)
        self._reset_next_eviction()

    def _drop_oldest(self) -> None:
        self.forced_evictions += self._drop(min(self._buckets))
        self._reset_next_eviction()

    def _drop(self, bucket_index: int) -> int:
        """Forget the ids of one bucket; returns how many were still remembered."""
        index = self._index
        dropped = 0
        for key in self._buckets.pop(bucket_index):
            if index.get(key) == bucket_index:  # not forgotten, nor re-filed elsewhere
                del index[key]
                dropped += 1
        return dropped

    def _reset_next_eviction(self) -> None:
        self._next_eviction_ms = (
            (min(self._buckets) + 1) * self._bucket_ms if self._buckets else float("inf")
        )
