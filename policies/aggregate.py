"""Incremental aggregation of one source partition into mergeable partials.

A ``Partial`` is the cumulative state of one (window, group, source): events, the set of
subject pseudonyms, pseudonym sets of ``distinct`` fields, exact running sums, value counts and
(for quantiles) the values themselves. It is never a delta: the partial with the larger
``through`` (last offset folded) supersedes, which makes merging a join-semilattice.

Each event id counts at most once per (view, window, subject): the aggregator keeps, per open
window, the digests of the (pseudonym, canonical event id) pairs it folded; a later copy in
offset order is counted as ``duplicate`` and changes nothing (the first copy wins, whatever
the later one holds). Raw is keyed by the canonical subject, so every copy of an event sent
under its subject reaches the same partition, hence the same aggregator. The digests live as
long as their window is open here and travel in the checkpoint (``snapshot``).

A noised view bounds each subject's contribution to a window (``NoiseSpec``): the first
``max_groups`` groups it reaches in offset order, the first ``max_contributions`` events in
each; a record beyond is counted as ``bounded`` and folds nothing. The bound is a function of
the subject's own records in offset order (raw is keyed by subject: one partition holds them
all), so a replay keeps the same contributions. Its counters live beside the event digests,
keyed by pseudonym, and travel in the checkpoint too. Noised sums clamp each value into
``[-value_bound, value_bound]``.

A view released with linked views (``ViewSpec.linked``) also keeps, per partial, the subjects
of each *atom* of its events (their groups in every view of the set: ``policies.linked``).

Sums are kept exactly as Shewchuk partial sums (the algorithm behind ``math.fsum``), so the
sum of a group does not depend on how events were split over partitions or in what order they
were folded: ``fsum`` of the concatenated partials is the correctly rounded exact sum.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Iterable
from math import isfinite
from typing import Any

import orjson

from policies.base import (
    NO_WATERMARK,
    OutsideTerritory,
    ProcessOutcome,
    Record,
)
from policies.linked import LinkedFold, atom_from_json, atom_to_json
from policies.noise import clamp
from policies.pseudonymise import KeyDestroyedError, Pseudonymiser, canonical_id
from policies.secondary import Atom
from policies.spec import ViewSpec

GroupKey = tuple[Any, ...]
DIGEST_BYTES = 8  # 64 bits: a collision needs ~4e9 ids in one window of one partition


def event_digest(pseudonym: str, event_id: object) -> str:
    """The identity of one event of one subject, as kept to recognise its copies.

    Keyed by the pseudonym (so the state holds no raw identifier) and the canonical event id.
    """
    data = f"{pseudonym}\x00{canonical_id(event_id)}".encode()
    return hashlib.blake2b(data, digest_size=DIGEST_BYTES).hexdigest()


def numeric(value: Any) -> float | None:
    """A finite number as float; None, booleans, text and NaN/inf contribute nothing."""
    if value is None or isinstance(value, bool) or not isinstance(value, int | float):
        return None
    number = float(value)
    return number if math.isfinite(number) else None


def add_exact(partials: list[float], x: float) -> None:
    """Add ``x`` to an exact sum held as non-overlapping floats (Shewchuk 1997)."""
    i = 0
    for y in partials:
        if abs(x) < abs(y):
            x, y = y, x
        hi = x + y
        lo = y - (hi - x)
        if lo:
            partials[i] = lo
            i += 1
        x = hi
    partials[i:] = [x]


class Partial:
    """Cumulative state of one (window_start, group, source); see the module docstring."""

    __slots__ = (
        "window_start",
        "group",
        "source",
        "through",
        "events",
        "subjects",
        "distinct",
        "sums",
        "counts",
        "values",
        "links",
        "dirty",
        "_frozen_json",
    )

    def __init__(self, window_start: int, group: GroupKey, source: str) -> None:
        self.window_start = window_start
        self.group = group
        self.source = source
        self.through = -1
        self.events = 0
        self.subjects: set[str] = set()
        self.distinct: dict[str, set[str]] = {}
        self.sums: dict[str, list[float]] = {}
        self.counts: dict[str, int] = {}
        self.values: dict[str, list[float]] = {}
        self.links: dict[Atom, set[str]] = {}
        self.dirty = False
        self._frozen_json: bytes | None = None

    @property
    def key(self) -> tuple[int, GroupKey, str]:
        """Identity in the merge lattice."""
        return (self.window_start, self.group, self.source)

    def to_dict(self) -> dict[str, Any]:
        """JSON-compatible form: pseudonyms and numbers only, sets as sorted lists."""
        data: dict[str, Any] = {
            "window_start": self.window_start,
            "group": list(self.group),
            "source": self.source,
            "through": self.through,
            "events": self.events,
            "subjects": sorted(self.subjects),
            "distinct": {f: sorted(s) for f, s in self.distinct.items()},
            "sums": {f: list(p) for f, p in self.sums.items()},
            "counts": dict(self.counts),
            "values": {f: list(v) for f, v in self.values.items()},
        }
        if self.links:
            data["links"] = sorted(
                ([atom_to_json(atom), sorted(subjects)] for atom, subjects in self.links.items()),
                key=lambda pair: orjson.dumps(pair[0]),
            )
        return data

    def frozen_json(self) -> bytes:
        """``to_dict`` as JSON with sorted keys, computed once.

        Only for partials that no longer change: those a merger holds (it replaces a partial
        with a newer one, never mutates it). The merger's snapshot is written with every
        release, and re-serialising every open partial each time made it quadratic.
        """
        if self._frozen_json is None:
            self._frozen_json = orjson.dumps(self.to_dict(), option=orjson.OPT_SORT_KEYS)
        return self._frozen_json

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Partial:
        """Inverse of ``to_dict``."""
        part = cls(int(data["window_start"]), tuple(data["group"]), str(data["source"]))
        part.through = int(data["through"])
        part.events = int(data["events"])
        part.subjects = set(data["subjects"])
        part.distinct = {f: set(s) for f, s in data["distinct"].items()}
        part.sums = {f: [float(x) for x in p] for f, p in data["sums"].items()}
        part.counts = {f: int(n) for f, n in data["counts"].items()}
        part.values = {f: [float(x) for x in v] for f, v in data["values"].items()}
        part.links = {atom_from_json(a): set(s) for a, s in data.get("links", ())}
        return part

    def copy(self) -> Partial:
        """An independent copy (the aggregator keeps mutating the original)."""
        part = Partial(self.window_start, self.group, self.source)
        part.through, part.events = self.through, self.events
        part.subjects = set(self.subjects)
        part.distinct = {f: set(s) for f, s in self.distinct.items()}
        part.sums = {f: list(p) for f, p in self.sums.items()}
        part.counts = dict(self.counts)
        part.values = {f: list(v) for f, v in self.values.items()}
        part.links = {a: set(s) for a, s in self.links.items()}
        return part

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Partial):
            return NotImplemented
        return self.to_dict() == other.to_dict()

    __hash__ = None  # type: ignore[assignment]  # mutable


class Aggregator:
    """Folds one source partition of one view (implements ``base.PartitionAggregator``)."""

    def __init__(self, spec: ViewSpec, pseudonymiser: Pseudonymiser, source: str) -> None:
        self.spec = spec
        self.source = source
        self.pseudonymiser = pseudonymiser
        self.outcome = ProcessOutcome()
        self._position = -1
        self._max_time: int | None = None
        self._open: dict[tuple[int, GroupKey], Partial] = {}
        self._seen: dict[int, set[str]] = {}  # window start → event digests folded
        # window start → pseudonym → group → events counted (noised views: contribution bounds)
        self._bounds: dict[int, dict[str, dict[GroupKey, int]]] = {}
        noise = spec.noise
        self._limits = None if noise is None else (noise.max_groups, noise.max_contributions)
        self._clamp = None if noise is None else noise.value_bound
        self._event_id = spec.event_id_field
        self._dirty: list[Partial] = []
        self._numeric = spec.numeric_fields()
        self._quantiles = spec.quantile_fields()
        self._distinct = spec.distinct_fields()
        self._extras = bool(self._numeric or self._quantiles or self._distinct)
        self._linked = LinkedFold(spec) if spec.linked else None

    @property
    def watermark(self) -> int:
        """Max event time seen minus the allowed lateness."""
        if self._max_time is None:
            return NO_WATERMARK
        return self._max_time - self.spec.lateness_ms

    @property
    def position(self) -> int:
        """Last offset processed (``-1`` before any)."""
        return self._position

    def process(self, records: Iterable[tuple[int, Record]]) -> ProcessOutcome:
        """Fold records in offset order; offsets at or below ``position`` are skipped.

        One flat loop with locals on purpose: this is the hot path (``broker.bench.policies``).
        A linked view takes ``_process_linked`` instead.
        """
        if self._linked is not None:
            return self._process_linked(self._linked, records)
        spec = self.spec
        folded = filtered = late = outside = skipped = duplicate = bounded = 0
        event_f, seen_by_window = self._event_id, self._seen
        limits, bounds_by_window = self._limits, self._bounds
        time_f, subject_f, width = spec.time_field, spec.subject_field, spec.window_ms
        rotation, lateness = spec.rotation_ms, spec.lateness_ms
        locators = tuple(d.locate for d in spec.dimensions)
        # One or two dimensions (most views) without a generator per record.
        single = locators[0] if len(locators) == 1 else None
        first, second = locators if len(locators) == 2 else (None, None)
        filter_f, allowed = spec.filter_field, spec.filter_set()
        position, max_time = self._position, self._max_time
        watermark = NO_WATERMARK if max_time is None else max_time - lateness
        open_, dirty = self._open, self._dirty
        table_epoch, table = None, {}
        extras, fold_fields = self._extras, self._fold_fields
        for offset, record in records:
            if offset <= position:
                skipped += 1
                continue
            position = offset
            if filter_f is not None and record.get(filter_f) not in allowed:
                filtered += 1
                continue
            t = record[time_f]
            start = t - t % width
            if start + width <= watermark:
                late += 1
                continue
            if max_time is None or t > max_time:
                max_time = t
                watermark = t - lateness
            group: GroupKey
            try:
                if single is not None:
                    group = (single(record),)
                elif first is not None and second is not None:
                    group = (first(record), second(record))
                else:
                    group = tuple(locate(record) for locate in locators)
            except OutsideTerritory:
                outside += 1
                continue
            # One key per window (the epoch of its start): a subject whose window straddles a
            # key rotation still counts once towards k.
            epoch = start // rotation
            try:
                if epoch != table_epoch:
                    table = self.pseudonymiser.table(subject_f, epoch)
                    table_epoch = epoch
                raw = record[subject_f]
                if type(raw) is not str:
                    raw = str(raw)
                # Keyed by the raw text: canonical_id (NFKC...) runs on a cache miss only.
                pseudonym = table.get(raw)
                if pseudonym is None:
                    pseudonym = self.pseudonymiser.compute(subject_f, raw, epoch, table)
            except KeyDestroyedError:
                late += 1  # older than key retention: its window is long gone
                table_epoch = None
                continue
            if event_f is not None:
                event_id = record.get(event_f)
                if event_id is not None:
                    digest = event_digest(pseudonym, event_id)
                    seen = seen_by_window.get(start)
                    if seen is None:
                        seen = seen_by_window[start] = set()
                    elif digest in seen:
                        duplicate += 1
                        continue
                    seen.add(digest)
            if limits is not None:
                by_subject = bounds_by_window.get(start)
                if by_subject is None:
                    by_subject = bounds_by_window[start] = {}
                mine = by_subject.get(pseudonym)
                if mine is None:
                    mine = by_subject[pseudonym] = {}
                counted = mine.get(group, 0)
                if counted >= limits[1] or (not counted and len(mine) >= limits[0]):
                    bounded += 1
                    continue
                mine[group] = counted + 1
            part = open_.get((start, group))
            if part is None:
                part = open_[(start, group)] = Partial(start, group, self.source)
            part.events += 1
            part.subjects.add(pseudonym)
            if extras:
                fold_fields(part, record, epoch)
            if not part.dirty:
                part.dirty = True
                dirty.append(part)
            folded += 1
        self._position, self._max_time = position, max_time
        out = ProcessOutcome(folded, filtered, late, outside, skipped, duplicate, bounded)
        self.outcome.add(out)
        return out

    def _process_linked(
        self, linked: LinkedFold, records: Iterable[tuple[int, Record]]
    ) -> ProcessOutcome:
        """``process`` for a view released with linked views: the same dispositions, plus the
        atoms of every event some view of the set folds (see the module docstring)."""
        spec, out = self.spec, ProcessOutcome()
        for offset, record in records:
            if offset <= self._position:
                out.skipped += 1
                continue
            self._position = offset
            if not spec.passes(record):
                out.filtered += 1
                continue
            t = record[spec.time_field]
            start = t - t % spec.window_ms
            if start + spec.window_ms <= self.watermark:
                out.late += 1
                continue
            if self._max_time is None or t > self._max_time:
                self._max_time = t
            placed = linked.place(record)
            own = placed[linked.own]
            if own is None:
                out.outside += 1
                if not any(p is not None for p in placed):
                    continue
            epoch = start // spec.rotation_ms
            try:
                pseudonym = self.pseudonymiser.pseudonym(
                    spec.subject_field, record[spec.subject_field], epoch
                )
            except KeyDestroyedError:
                out.late += own is not None  # older than key retention: its window is gone
                continue
            event_id = record.get(spec.event_id_field) if spec.event_id_field else None
            digest = None if event_id is None else event_digest(pseudonym, event_id)
            atom = linked.atom(start, digest, placed, self._seen.setdefault(start, set()))
            if own is not None and atom[linked.own] is None:
                out.duplicate += 1
            elif own is not None:
                part = self._partial(start, own)
                part.events += 1
                part.subjects.add(pseudonym)
                if self._extras:
                    self._fold_fields(part, record, epoch)
                part.links.setdefault(atom, set()).add(pseudonym)
                out.folded += 1
                continue
            if any(group is not None for group in atom):
                self._partial(start, linked.links_only).links.setdefault(atom, set()).add(pseudonym)
        self.outcome.add(out)
        return out

    def _partial(self, start: int, group: GroupKey) -> Partial:
        part = self._open.get((start, group))
        if part is None:
            part = self._open[(start, group)] = Partial(start, group, self.source)
        if not part.dirty:
            part.dirty = True
            self._dirty.append(part)
        return part

    def _fold_fields(self, part: Partial, record: Record, epoch: int) -> None:
        sums, counts, bound = part.sums, part.counts, self._clamp
        for name in self._numeric:
            x = record.get(name)
            if type(x) is float or type(x) is int:  # what ``numeric`` takes, without the call
                x = float(x)
                if not isfinite(x):
                    continue
            else:
                x = numeric(x)
                if x is None:
                    continue
            if bound is not None:
                x = clamp(x, bound)
            held = sums.get(name)
            if held is None:
                sums[name] = [x]  # ``add_exact`` of a first value
            else:
                add_exact(held, x)
            counts[name] = counts.get(name, 0) + 1
        for name in self._quantiles:
            x = numeric(record.get(name))
            if x is not None:
                part.values.setdefault(name, []).append(x)
        for name in self._distinct:
            value = record.get(name)
            if value is not None:
                pseudonym = self.pseudonymiser.pseudonym(name, value, epoch)
                part.distinct.setdefault(name, set()).add(pseudonym)

    def advance(self, offset: int, floor: int) -> None:
        """A control record at ``offset`` asserts that no later record of this source has an
        event time below ``floor`` (a heartbeat from the ingest side, which refuses records
        older than the allowed lateness on its own clock): the watermark moves up to ``floor``
        although no event arrived, so quiet sources do not hold windows open. In offset order
        like ``process``: at or below ``position`` it is a replay and changes nothing."""
        if offset <= self._position:
            return
        self._position = offset
        virtual = floor + self.spec.lateness_ms  # the watermark is max time - lateness
        if self._max_time is None or virtual > self._max_time:
            self._max_time = virtual

    def drain_partials(self) -> list[Partial]:
        """Copies of the partials changed since the last drain, stamped with ``position``.

        Afterwards, partials of windows already closed for this source (end <= watermark)
        are evicted: no later record can change them (it would be late).
        """
        drained = []
        for part in self._dirty:
            part.dirty = False
            part.through = self._position
            drained.append(part.copy())
        self._dirty = []
        watermark = self.watermark
        width = self.spec.window_ms
        for key in [k for k, p in self._open.items() if p.window_start + width <= watermark]:
            del self._open[key]
        self._forget_closed(watermark - width)
        return drained

    def drain_closed(self, *, final: bool = False) -> list[Partial]:
        """The partials of windows this source has closed (every one if ``final``), then
        evicted: each (window, group, source) leaves exactly once, stamped with ``position``.

        The runtime's alternative to ``drain_partials`` (use one or the other): a window
        cannot be released before every source's watermark has passed its end, so sending a
        partial while its window is still open here only costs bytes and merge work; the
        checkpoint's ``snapshot`` keeps open partials across restarts. A late record never
        changes a closed partial (``process`` counts it as late), so nothing is lost.
        """
        for part in self._dirty:
            part.dirty = False
        self._dirty = []
        limit = self.watermark - self.spec.window_ms
        closed = [key for key, part in self._open.items() if final or part.window_start <= limit]
        out = []
        for key in closed:
            part = self._open.pop(key)
            part.through = self._position
            out.append(part)
        if final:
            self._seen.clear()
            self._bounds.clear()
            if self._linked is not None:
                self._linked.forget(None)
        else:
            self._forget_closed(limit)
        return out

    def _forget_closed(self, limit: int) -> None:
        """Drop the event digests and contribution counters of windows starting at or before
        ``limit`` (closed here)."""
        for start in [s for s in self._seen if s <= limit]:
            del self._seen[start]
        for start in [s for s in self._bounds if s <= limit]:
            del self._bounds[start]
        if self._linked is not None:
            self._linked.forget(limit)

    @property
    def open_partials(self) -> int:
        """Number of partials held in memory."""
        return len(self._open)

    def snapshot(self) -> dict[str, Any]:
        """JSON-compatible state; drain first so nothing pending is lost."""
        return {
            "source": self.source,
            "position": self._position,
            "max_time": self._max_time,
            "open": [p.to_dict() for p in self._open.values()],
            "seen": {str(start): sorted(digests) for start, digests in self._seen.items()},
            "bounds": {
                str(start): {
                    pseudonym: [[list(group), n] for group, n in groups.items()]
                    for pseudonym, groups in by_subject.items()
                }
                for start, by_subject in self._bounds.items()
            },
            "link_seen": self._linked.snapshot() if self._linked is not None else {},
        }

    def restore(self, state: dict[str, Any]) -> None:
        """Reload a ``snapshot``; later records at offsets <= position are skipped."""
        self._position = int(state["position"])
        self._max_time = None if state["max_time"] is None else int(state["max_time"])
        self._open = {}
        for data in state["open"]:
            part = Partial.from_dict(data)
            self._open[(part.window_start, part.group)] = part
        self._seen = {int(start): set(d) for start, d in state.get("seen", {}).items()}
        self._bounds = {
            int(start): {
                pseudonym: {tuple(group): int(n) for group, n in groups}
                for pseudonym, groups in by_subject.items()
            }
            for start, by_subject in state.get("bounds", {}).items()
        }
        if self._linked is not None:
            self._linked.restore(state.get("link_seen", {}))
        self._dirty = []
