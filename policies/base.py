"""The small abstractions of the privacy core, and how the pieces fit.

Flow of one view (everything is pure: no Kafka, no clock, no I/O)::

    (offset, record) ──▶ PartitionAggregator  (one per source partition, e.g. "p3")
        filter → minimise (only named fields are read) → assign tumbling Window (a multiple of
        the time bucket, so bucketing first would not move any event)
        → generalise (h3 | grid | zones | round | field) → pseudonymise subject/fields
        → fold into a Partial keyed (window_start, group, source)
    drain_partials() ──▶ [Partial]  ──(internal topic, JSON via Partial.to_dict)──▶
    WindowMerger (knows the set of sources)
        merge(partials)        join-semilattice: per (window, group, source) keep larger `through`
        observe_watermark(s,w) per-source watermark = max event time − allowed lateness
        release_ready()        windows with end + delay <= min watermark → finalise → suppress (k)
                               → secondary suppression (views linked to others: ``secondary``)
                               → noise (optional, keyed, deterministic) → ε ledger → Release

The runtime (``broker/``) only needs this module plus ``policies.compile.compile_contract``.
Timestamps and window bounds are ``int`` milliseconds since the Unix epoch (UTC).

Idempotence contract with the runtime:

* ``PartitionAggregator.process`` skips records whose offset is ``<=`` its ``position``, so a
  replay after a restore (``snapshot()``/``restore()``) never double-counts.
* A partial is cumulative for its (window, group, source); re-delivering it is harmless and the
  one with the larger ``through`` wins, in any order.
* Partials of a source must reach the merger before a watermark of that source that was read
  after them (send both on one ordered channel). Partials for already released windows are
  ignored (counted in ``WindowMerger.stale_partials``); a released window never reopens.
* A source that has seen no event holds every window open (``NO_WATERMARK``). Idle partitions
  are the runtime's call (it owns the clock): e.g. ``observe_watermark(s, clock − lateness)``
  after an idle timeout, or ``END_OF_STREAM`` when a replay is finished.
* Keys: the runtime calls ``KeyRing.destroy_before(contract, epoch_of(now − retention))``;
  records whose key is destroyed are counted as late.
"""

from __future__ import annotations

import math
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Protocol

from contracts.errors import RespublicaError  # a pure module: the root of the exception tree

Record = dict[str, Any]
"""A decoded event: field name → value. Event time is an ``int`` of ms since the epoch."""

NO_WATERMARK = -(2**63)
"""Watermark of a source that has seen no event yet: holds every window open."""

END_OF_STREAM = 2**63 - 1
"""Watermark meaning "this source will send nothing more": releases every window."""

EMPTY_WINDOWS_AFTER_DATA = 1000
"""How many windows without any event, after a window with events, still get a report
(0 groups), so analysts can tell "nothing happened" from "nothing arrived".

A view reports every window from its first window with an event on: windows with events, and
the windows without any that follow one, up to this many in a row (a quiet span longer than
that is reported for its first ``EMPTY_WINDOWS_AFTER_DATA`` windows only, until the next event)
and only as far as every source's watermark *before* its end of stream has passed (an ended
replay says nothing about time). Bounded by the data, never by a clock jump: a heartbeat years
ahead releases at most this many empty windows. ``docs/architecture.md``, "Empty windows".
"""


class PolicyError(RespublicaError):
    """Root of the errors raised by ``policies/`` (messages never carry record values)."""


class OutsideTerritory(PolicyError):  # noqa: N818 - a marker, not a failure
    """A point could not be generalised: no location, outside the territory, or in no zone."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class Disposition(StrEnum):
    """What happened to one input record in one view (closed set, used as a metric label)."""

    FOLDED = "folded"
    FILTERED = "filtered"
    LATE = "late"
    OUTSIDE = "outside"
    DUPLICATE = "duplicate"
    """An event id already folded into the same window for the same subject (a re-send)."""
    BOUNDED = "bounded"
    """Beyond the subject's contribution bounds in this window (noised views)."""


@dataclass(frozen=True, slots=True)
class Window:
    """A tumbling event-time window ``[start, end)`` in ms."""

    start: int
    end: int


@dataclass(slots=True)
class ProcessOutcome:
    """Counts of what ``PartitionAggregator.process`` did with a batch."""

    folded: int = 0
    filtered: int = 0
    late: int = 0
    outside: int = 0
    skipped: int = 0
    """Records at an offset already folded (a replay after restore): not counted again."""
    duplicate: int = 0
    """Records whose event id the window had already folded for the same subject."""
    bounded: int = 0
    """Records beyond their subject's contribution bounds (groups, events per group)."""

    def by_disposition(self) -> dict[Disposition, int]:
        """The counts keyed by ``Disposition`` (metric labels); replays are not dispositions."""
        return {
            Disposition.FOLDED: self.folded,
            Disposition.FILTERED: self.filtered,
            Disposition.LATE: self.late,
            Disposition.OUTSIDE: self.outside,
            Disposition.DUPLICATE: self.duplicate,
            Disposition.BOUNDED: self.bounded,
        }

    def add(self, other: ProcessOutcome) -> None:
        """Accumulate another outcome into this one."""
        self.folded += other.folded
        self.filtered += other.filtered
        self.late += other.late
        self.outside += other.outside
        self.skipped += other.skipped
        self.duplicate += other.duplicate
        self.bounded += other.bounded


@dataclass(frozen=True, slots=True)
class SuppressionReport:
    """What a window's release withheld, MDS-style, plus accounting for the auditor.

    ``events_published + events_suppressed`` equals the events folded into the window. When
    ``withheld_reason`` is set (``"budget_exhausted"``) the whole window was withheld and all
    its groups and events are counted as suppressed. ``groups_secondary`` counts the groups of
    ``groups_suppressed`` that had k subjects or more but were withheld so that linked views
    cannot be differenced (``policies.secondary``); the others are the primary suppressions.
    """

    k: int
    groups_published: int
    groups_suppressed: int
    events_published: int
    events_suppressed: int
    withheld_reason: str | None = None
    groups_secondary: int = 0


MeasureValue = int | float | list[float] | None


@dataclass(frozen=True, slots=True)
class GroupResult:
    """One published group: its dimension values and measure values."""

    group: Mapping[str, Any]
    measures: Mapping[str, MeasureValue]


def _canonical_value(value: Any) -> Any:
    if isinstance(value, float):
        return round(value, 9) if math.isfinite(value) else repr(value)
    if isinstance(value, list | tuple):
        return tuple(_canonical_value(v) for v in value)
    return value


@dataclass(frozen=True, eq=False, slots=True)
class Release:
    """The publication of one window of one view: only published groups, never pseudonyms."""

    contract: str
    view: str
    window: Window
    groups: tuple[GroupResult, ...]
    report: SuppressionReport
    key_ids: tuple[str, ...]
    epsilon: float = 0.0

    def canonical(self) -> tuple[Any, ...]:
        """A hashable, order-independent form; floats rounded to 9 decimal places."""
        groups = sorted(
            (
                tuple(sorted((k, _canonical_value(v)) for k, v in g.group.items())),
                tuple(sorted((k, _canonical_value(v)) for k, v in g.measures.items())),
            )
            for g in self.groups
        )
        return (
            self.contract,
            self.view,
            self.window.start,
            self.window.end,
            tuple(groups),
            self.report,
            self.key_ids,
            round(self.epsilon, 9),
        )

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Release):
            return NotImplemented
        return self.canonical() == other.canonical()

    def __hash__(self) -> int:
        return hash(self.canonical())

    def to_dict(self) -> dict[str, Any]:
        """JSON-compatible form for the runtime's encoders (groups in canonical order)."""
        return {
            "contract": self.contract,
            "view": self.view,
            "window_start": self.window.start,
            "window_end": self.window.end,
            "groups": [
                {"group": dict(g.group), "measures": dict(g.measures)}
                for g in sorted(self.groups, key=lambda g: repr(sorted(g.group.items())))
            ],
            "report": {
                "k": self.report.k,
                "groups_published": self.report.groups_published,
                "groups_suppressed": self.report.groups_suppressed,
                "events_published": self.report.events_published,
                "events_suppressed": self.report.events_suppressed,
                "withheld_reason": self.report.withheld_reason,
                "groups_secondary": self.report.groups_secondary,
            },
            "key_ids": list(self.key_ids),
            "epsilon": self.epsilon,
        }


class PartialLike(Protocol):
    """What the runtime needs from a partial: identity, ordering and a JSON form."""

    window_start: int
    source: str
    through: int

    def to_dict(self) -> dict[str, Any]:
        """JSON-compatible form (pseudonyms only, never raw values)."""
        ...


class PartitionAggregator(Protocol):
    """Folds the records of one source partition into partials. Not thread-safe."""

    source: str

    @property
    def watermark(self) -> int:
        """Max event time seen minus allowed lateness (``NO_WATERMARK`` before any event)."""
        ...

    @property
    def position(self) -> int:
        """Last offset folded (``-1`` before any)."""
        ...

    def process(self, records: Iterable[tuple[int, Record]]) -> ProcessOutcome:
        """Fold ``(offset, record)`` pairs, in offset order."""
        ...

    def drain_partials(self) -> list[Any]:
        """Partials changed since the last drain; closed windows are then evicted."""
        ...

    def drain_closed(self, *, final: bool = False) -> list[Any]:
        """Partials of windows closed for this source (all if ``final``), each exactly once."""
        ...

    def snapshot(self) -> dict[str, Any]:
        """JSON-compatible state (position, max event time, open partials)."""
        ...

    def restore(self, state: dict[str, Any]) -> None:
        """Reload a ``snapshot``; then replay from any offset (already folded ones are skipped)."""
        ...


class WindowMerger(Protocol):
    """Combines partials of all sources and releases closed windows. Not thread-safe."""

    stale_partials: int

    def merge(self, partials: Iterable[Any]) -> None:
        """Union partials in; idempotent, associative and commutative."""
        ...

    def observe_watermark(self, source: str, watermark: int) -> None:
        """Record a source's watermark (monotone; a lower value is ignored)."""
        ...

    def release_ready(self) -> list[Release]:
        """Finalise, suppress, noise and evict every window closed on all sources."""
        ...

    def snapshot(self) -> dict[str, Any]:
        """JSON-compatible state (open windows, watermarks, horizon, ε ledger)."""
        ...

    def restore(self, state: dict[str, Any]) -> None:
        """Reload a ``snapshot`` taken over the same set of sources."""
        ...


class ViewPipeline(Protocol):
    """A compiled view: factory of per-partition aggregators and of the merger."""

    contract: str
    view: str

    def partition_state(self, source: str) -> PartitionAggregator:
        """A fresh aggregator for one source partition (``restore`` it from a snapshot)."""
        ...

    def merger(self, sources: Collection[str]) -> WindowMerger:
        """A fresh merger over exactly these sources."""
        ...
