"""The auditor's own pass over a raw topic: what became of every event, in every view.

Independent of the worker's counters (which reset on restart) and of its internal state: each
raw partition is read in offset order and every event is classified per view exactly as the
streaming fold defines it (``policies.aggregate.Aggregator.process``):

    filter does not match            → filtered
    window already closed            → late   (window end <= max event time − allowed lateness,
                                               per partition, in offset order)
    no cell/zone for its position    → outside
    event id already folded for the  → duplicate  (per partition, window and canonical
    same subject in this window                    subject; the first copy in offset order wins)
    beyond the subject's bounds      → bounded  (noised views: per partition, window and
    in this window                                 canonical subject, its first max_groups
                                                   groups and max_contributions events in each)
    otherwise                        → folded into (window, group)

Views released together (``contracts.links``) also get their **atoms**: per window, each
event's folded group in every view of the set (None where a view did not fold it), with the
canonical subjects; ``finish`` then takes the secondary-suppression decision of every window
(``policies.secondary.decide``) from them, as each view's merger does from its partials.

No key is needed: within one window one pseudonym key is used, so distinct canonical
identifiers (``policies.pseudonymise.canonical_id``, the form the pseudonym is computed from)
count exactly what distinct pseudonyms count. Identifiers stay in memory (canonical for the k
check, as sent for the canary scan) and are never printed.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from kafka.consumer.fetcher import ConsumerRecord

from broker.kafka.internal import (
    CONTROL_HEADER,
    END_OF_STREAM_MARK,
    heartbeat_floor,
    source_name,
)
from broker.kafka.serde import SerializationError, decode_body, read_header, schema_id
from contracts.links import linked_sets
from contracts.model import Contract
from policies.aggregate import numeric
from policies.base import NO_WATERMARK, Disposition, OutsideTerritory, Record
from policies.pseudonymise import canonical_id
from policies.secondary import decide
from policies.spec import ViewSpec, view_spec

H_RECEIVED_AT = "respublica.received_at"
GroupText = tuple[str | None, ...]
CellKey = tuple[int, GroupText]
AtomText = tuple[GroupText | None, ...]


def group_text(values: Iterable[Any]) -> GroupText:
    """A group as published: every dimension value as text (``None`` stays ``None``)."""
    return tuple(None if v is None else str(v) for v in values)


@dataclass
class Cell:
    """What the raw events of one (window, group) hold: events, subjects, distinct values."""

    events: int = 0
    subjects: set[str] = field(default_factory=set)
    distinct: dict[str, set[str]] = field(default_factory=dict)
    sums: dict[str, float] = field(default_factory=dict)


@dataclass
class ViewTally:
    """One view's classification of a stream's events."""

    spec: ViewSpec
    cells: dict[CellKey, Cell] = field(default_factory=dict)
    in_period: Counter[str] = field(default_factory=Counter)
    folded_in_period: Counter[CellKey] = field(default_factory=Counter)
    # Per source: dispositions of the records at or below the worker's checkpoint position.
    up_to_checkpoint: dict[str, Counter[str]] = field(default_factory=dict)
    _max_time: dict[int, int] = field(default_factory=dict)
    _seen: dict[int, set[tuple[int, str, str]]] = field(default_factory=dict)
    _bounds: dict[tuple[int, int, str], Counter[GroupText]] = field(default_factory=dict)
    secondary: dict[int, frozenset[GroupText]] = field(default_factory=dict)
    """Per window start: groups withheld to protect linked views (``StreamReplay.finish``)."""

    def classify(self, partition: int, record: Record) -> tuple[Disposition, CellKey | None]:
        """The disposition of the next record of ``partition`` (offset order)."""
        spec = self.spec
        if spec.filter_field is not None and not spec.passes(record):
            return Disposition.FILTERED, None
        t = int(record[spec.time_field])
        start = t - t % spec.window_ms
        seen = self._max_time.get(partition)
        watermark = NO_WATERMARK if seen is None else seen - spec.lateness_ms
        if start + spec.window_ms <= watermark:
            return Disposition.LATE, None
        if seen is None or t > seen:
            self._max_time[partition] = t
        try:
            group = group_text(d.locate(record) for d in spec.dimensions)
        except OutsideTerritory:
            return Disposition.OUTSIDE, None
        event_id = record.get(spec.event_id_field) if spec.event_id_field else None
        if event_id is not None:
            identity = (start, canonical_id(record[spec.subject_field]), canonical_id(event_id))
            folded = self._seen.setdefault(partition, set())
            if identity in folded:
                return Disposition.DUPLICATE, None
            folded.add(identity)
        noise = spec.noise
        if noise is not None:
            subject = canonical_id(record[spec.subject_field])
            mine = self._bounds.setdefault((partition, start, subject), Counter())
            if mine[group] == 0 and len(mine) >= noise.max_groups:
                return Disposition.BOUNDED, None
            if mine[group] >= noise.max_contributions:
                return Disposition.BOUNDED, None
            mine[group] += 1
        return Disposition.FOLDED, (start, group)

    def advance(self, partition: int, floor: int) -> None:
        """A heartbeat: no later record of ``partition`` has an event time below ``floor``."""
        virtual = floor + self.spec.lateness_ms
        seen = self._max_time.get(partition)
        if seen is None or virtual > seen:
            self._max_time[partition] = virtual

    def time_passed(self, partitions: Iterable[int]) -> int:
        """How far event time has passed on every partition: the lowest of their watermarks
        (events and heartbeats; an end-of-stream record says nothing about time)."""
        seen = [self._max_time.get(p) for p in partitions]
        lowest = min((t for t in seen if t is not None), default=None)
        if lowest is None or None in seen:
            return NO_WATERMARK
        return lowest - self.spec.lateness_ms

    def fold(self, key: CellKey, record: Record) -> None:
        """Add a folded event to its cell."""
        cell = self.cells.get(key)
        if cell is None:
            cell = self.cells[key] = Cell()
        cell.events += 1
        raw = record[self.spec.subject_field]
        cell.subjects.add(canonical_id(raw))
        for name in self.spec.distinct_fields():
            value = record.get(name)
            if value is not None:
                cell.distinct.setdefault(name, set()).add(canonical_id(value))
        for name in self.spec.numeric_fields():
            number = numeric(record.get(name))
            if number is not None:
                cell.sums[name] = cell.sums.get(name, 0.0) + number


@dataclass
class StreamTally:
    """One stream: counts in the period, and each view's tally."""

    stream: str
    views: dict[str, ViewTally]
    raw_events: int = 0
    undecodable: int = 0
    control: int = 0
    max_event_time: int | None = None
    min_event_time: int | None = None
    identifiers: set[str] = field(default_factory=set)
    versions: Counter[str] = field(default_factory=Counter)
    atoms: dict[tuple[str, ...], dict[int, dict[AtomText, set[str]]]] = field(default_factory=dict)
    """Per linked set (its views): window start → atom → canonical subjects."""


class StreamReplay:
    """Classifies the records of ``raw.<c>.<s>`` for every view of the stream."""

    def __init__(
        self, contract: Contract, stream: str, checkpoints: Mapping[str, Mapping[str, int]]
    ) -> None:
        spec_stream = contract.stream(stream)
        self._schema = spec_stream.avro_schema
        self._schema_id = schema_id(spec_stream.raw_schema)
        views = {v.name: ViewTally(view_spec(contract, v.name)) for v in contract.views_of(stream)}
        self.tally = StreamTally(stream, views)
        self._sets = [s.views for s in linked_sets(contract) if s.stream == stream]
        for names in self._sets:
            self.tally.atoms[names] = {}
        self._time_field = spec_stream.event_time
        self._subject_field = spec_stream.subject
        self._secret_fields = sorted({f for v in contract.views_of(stream) for f in v.pseudonymise})
        self._checkpoints = checkpoints  # view -> source -> position

    def run(self, partition: int, records: Iterable[ConsumerRecord], period: Any) -> None:
        """Classify the records of one partition, in offset order."""
        tally = self.tally
        source = source_name(partition)
        for raw in records:
            headers = raw.headers or []
            if not raw.value and any(
                k == CONTROL_HEADER and v == END_OF_STREAM_MARK for k, v in headers
            ):
                tally.control += 1
                continue
            floor = heartbeat_floor(headers)
            if floor is not None:  # a heartbeat moves every view's watermark of the partition
                tally.control += 1
                for view in tally.views.values():
                    view.advance(partition, floor)
                continue
            record = self._decode(raw.value)
            if record is None:
                tally.undecodable += int(period.contains(int(raw.timestamp)))
                continue
            self._remember(record, headers)
            in_period = period.contains(int(record[self._time_field]))
            tally.raw_events += in_period
            folded: dict[str, CellKey] = {}
            for name, view in tally.views.items():
                disposition, key = view.classify(partition, record)
                if key is not None:
                    folded[name] = key
                    view.fold(key, record)
                    if in_period:
                        view.folded_in_period[key] += 1
                if in_period:
                    view.in_period[disposition.value] += 1
                position = self._checkpoints.get(name, {}).get(source)
                if position is not None and raw.offset <= position:
                    view.up_to_checkpoint.setdefault(source, Counter())[disposition.value] += 1
            if folded and self._sets:
                self._atoms(folded, record)

    def _atoms(self, folded: dict[str, CellKey], record: Record) -> None:
        """The event's atom in every linked set some view of which folded it."""
        subject = canonical_id(record[self._subject_field])
        for names in self._sets:
            keys = [folded.get(name) for name in names]
            start = next((key[0] for key in keys if key is not None), None)
            if start is not None:
                atom = tuple(None if key is None else key[1] for key in keys)
                by_window = self.tally.atoms[names].setdefault(start, {})
                by_window.setdefault(atom, set()).add(subject)

    def finish(self) -> None:
        """Every window's secondary-suppression decision, per linked set (after ``run``)."""
        for names, windows in self.tally.atoms.items():
            ks = [self.tally.views[name].spec.k for name in names]
            for start, atoms in windows.items():
                decision = decide(atoms, ks)
                for i, name in enumerate(names):
                    self.tally.views[name].secondary[start] = decision.secondary[i]

    def _decode(self, value: bytes | None) -> Record | None:
        if not value:
            return None
        try:
            if read_header(value) != self._schema_id:
                return None
            return decode_body(value, self._schema)
        except SerializationError:
            return None

    def _remember(self, record: Record, headers: list[tuple[str, bytes]]) -> None:
        tally = self.tally
        t = int(record[self._time_field])
        tally.max_event_time = t if tally.max_event_time is None else max(tally.max_event_time, t)
        tally.min_event_time = t if tally.min_event_time is None else min(tally.min_event_time, t)
        for name in (self._subject_field, *self._secret_fields):
            value = record.get(name)
            if value is not None:
                # As sent (a leak shows what was sent); the needles add the canonical form.
                tally.identifiers.add(str(value).strip())
        version = next((v for k, v in headers if k == "respublica.contract_version"), None)
        tally.versions[(version or b"").decode("utf-8", "replace")] += 1
