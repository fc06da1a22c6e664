"""Event-time flow control of the raw partitions: read them in step, so windows keep closing.

A view releases a window once the lowest watermark of its sources has passed the window's
end. Kafka does not read partitions in step: kafka-python serves whichever fetch came back,
and partitions of one topic hold different numbers of records for the same span of event
time. On a backlog (a replay, a restart after an outage) one partition can run days ahead of
another (35 days on the 2,000,000-event bench), and every window in between stays open in
the merger: memory grows with the events read, and the merger's snapshot outgrew Kafka's
record size limit. Kafka Streams solves the same problem by choosing the partition with the
lowest timestamp next; with a consumer we pause the partitions that ran ahead.

The rule (``decide``), per raw topic:

- the *slowest* partition is the one with the lowest watermark among those that still have
  records to read (position < end offset) and have not ended; a caught-up, idle or ended
  partition never holds the others back (there is no idle timeout in event time);
- a partition more than ``lead_ms`` ahead of the slowest is paused, whether or not it has a
  backlog of its own; a paused one is resumed once it is less than half the lead ahead
  (hysteresis: every pause and resume costs fetch round trips);
- the slowest partition itself is never paused, so the loop always has something to read.

``FlowControl`` applies it to the raw loop's consumer (kafka-python's or aiokafka's facade). End
offsets come from the broker (``end_offsets``), refreshed at most every ``refresh_s``; the
consumer's cached high-water mark is not used because a paused partition stops refreshing it.
Belt and braces: if a poll returns nothing while some partitions are paused, every one of them
is resumed at once; and ``before_poll`` works around a kafka-python 3.0.12 fetcher bug that
otherwise left resumed partitions unread (a no-op on aiokafka).

The lead has a floor of 24 hours of event time: pausing costs throughput with kafka-python
(one partition per fetch round trip), and on a backlog one fetch of 1 MiB per partition spans
hours of event time. Measured on the 2,000,000-event bench topic (consumer + decode only):
50,000 records/s without flow control, 22,500 with a 40-minute lead, 34,000 with 6 hours,
55,000 with 24 hours. Memory stays bounded either way: at most lead / window extra windows
per view.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Collection, Iterable, Mapping
from typing import Any

from kafka import TopicPartition

from broker.kafka.clients import CLIENT_ERRORS
from policies.base import END_OF_STREAM, NO_WATERMARK

_log = logging.getLogger(__name__)
REFRESH_S = 1.0
MIN_LEAD_MS = 24 * 3600 * 1000  # see "The lead has a floor" above
END_OFFSETS_TIMEOUT_MS = 5_000


def decide(
    watermarks: Mapping[int, int], behind: Collection[int], paused: Collection[int], lead_ms: int
) -> set[int]:
    """The partitions that should be paused now (see the module docstring).

    ``watermarks``: every held partition's watermark (``END_OF_STREAM`` once ended);
    ``behind``: those with records left to read; ``paused``: those paused now.
    """
    lagging = [watermarks[p] for p in behind if p in watermarks and watermarks[p] != END_OF_STREAM]
    if not lagging:
        return set()
    slowest = max(min(lagging), NO_WATERMARK + lead_ms)  # far below every real time
    out = set()
    for p, wm in watermarks.items():
        if wm == END_OF_STREAM:
            continue
        ahead = wm - slowest
        if ahead > lead_ms or (p in paused and ahead > lead_ms // 2):
            out.add(p)
    return out


class FlowControl:
    """Pauses and resumes raw partitions of one consumer by event time."""

    def __init__(
        self,
        consumer: Any,
        *,
        refresh_s: float = REFRESH_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.consumer = consumer
        self.refresh_s = refresh_s
        self.clock = clock
        self.paused: set[TopicPartition] = set()
        self._ends: dict[TopicPartition, int] = {}
        self._ends_at = float("-inf")

    def balance(self, topics: Mapping[str, tuple[Mapping[int, int], int]]) -> None:
        """Pause/resume per topic; ``topics``: topic -> (watermark per held partition, lead)."""
        held = [TopicPartition(t, p) for t, (wms, _) in topics.items() for p in wms]
        still = set(held)
        self.forget([tp for tp in self.paused if tp not in still])
        self._refresh_ends(held)
        pause, resume = [], []
        for topic, (watermarks, lead_ms) in topics.items():
            behind = {p for p in watermarks if self._has_more(TopicPartition(topic, p))}
            now_paused = {tp.partition for tp in self.paused if tp.topic == topic}
            stop = decide(watermarks, behind, now_paused, lead_ms)
            pause += [TopicPartition(topic, p) for p in stop - now_paused]
            resume += [TopicPartition(topic, p) for p in now_paused - stop]
        if pause:
            self.consumer.pause(*pause)
            self.paused.update(pause)
        if resume:
            self.consumer.resume(*resume)
            self.paused.difference_update(resume)

    def before_poll(self) -> None:
        """Work around kafka-python 3.0.12 losing resumed partitions (call before each poll).

        When a partition is paused with fetched records still buffered, the fetcher parks them
        and only restores them while its "next records" slot is None; an exhausted (empty)
        record set left in that slot is falsy but not None, so a resumed partition's parked
        records never come back, and the partition is never fetched again either (it has
        parked data). The poll then waits its whole timeout for nothing: on the bench this
        stalled the loop for 2 s dozens of times a minute. Clearing the exhausted slot is what
        the fetcher itself would do on its next record set. A no-op on other versions.
        """
        fetcher = getattr(self.consumer, "_fetcher", None)
        current = getattr(fetcher, "_next_partition_records", None)
        if current is not None and not current:
            fetcher._next_partition_records = None  # type: ignore[union-attr]

    def idle(self) -> None:
        """A poll returned nothing: resume everything paused (liveness first)."""
        if self.paused:
            _log.debug("flow control: nothing read, resuming %d partition(s)", len(self.paused))
            self.consumer.resume(*self.paused)
            self.paused.clear()
            self._ends_at = float("-inf")

    def forget(self, tps: Iterable[TopicPartition]) -> None:
        """Partitions revoked: not ours to pause or resume any more."""
        for tp in tps:
            self.paused.discard(tp)
            self._ends.pop(tp, None)

    def _refresh_ends(self, held: list[TopicPartition]) -> None:
        if not held or self.clock() - self._ends_at < self.refresh_s:
            return
        self._ends_at = self.clock()
        try:
            ends = self.consumer.end_offsets(held, timeout_ms=END_OFFSETS_TIMEOUT_MS)
        except CLIENT_ERRORS as exc:  # unknown ends: nobody counts as behind, nothing is paused
            _log.warning("flow control: end offsets unavailable (%s)", type(exc).__name__)
            self._ends = {}
            return
        self._ends = {tp: int(end) for tp, end in ends.items() if end is not None}

    def _has_more(self, tp: TopicPartition) -> bool:
        end = self._ends.get(tp)
        if end is None:
            return False
        try:
            position = self.consumer.position(tp, timeout_ms=END_OFFSETS_TIMEOUT_MS)
        except CLIENT_ERRORS:
            return False
        return position is not None and int(position) < end
