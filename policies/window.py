"""Tumbling event-time windows: merging partials of all sources and releasing closed windows.

Why our own windows (``research/reliability.md`` §1.4): faust closes windows on the wall clock,
outside any transaction, and loses them on rebalance. Here a window ``[start, end)`` closes by
event time only: once ``end + delay <= min(watermark of every source)``. The merger's state is
a join-semilattice of partials (per (window, group, source) the larger ``through`` wins), so
partials can arrive in any order, any number of times.

Windows without any event are released too, with 0 groups (``EMPTY_WINDOWS_AFTER_DATA``): from
the view's first window with an event on, every later window is reported once it is closed,
except beyond ``EMPTY_WINDOWS_AFTER_DATA`` empty windows in a row. Which windows those are
depends only on the windows with events and on each source's last watermark before its end of
stream, never on when the merger ran, so a restart or a replay releases the same ones.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Collection, Iterable
from typing import Any

import orjson

from policies.aggregate import GroupKey, Partial
from policies.base import (
    EMPTY_WINDOWS_AFTER_DATA,
    END_OF_STREAM,
    NO_WATERMARK,
    GroupResult,
    MeasureValue,
    PolicyError,
    Release,
    Window,
)
from policies.linked import links_only_group
from policies.noise import EpsilonLedger, draws_per_window, noisy_measures, released
from policies.pseudonymise import key_id
from policies.secondary import Atom, decide
from policies.spec import ViewSpec
from policies.suppress import BUDGET_EXHAUSTED, GroupTotals, suppress, withhold


def window_of(event_time_ms: int, width_ms: int) -> Window:
    """The tumbling window (aligned on the Unix epoch) containing an event time."""
    start = event_time_ms - event_time_ms % width_ms
    return Window(start, start + width_ms)


def nearest_rank(sorted_values: list[float], q: float) -> float:
    """Nearest-rank quantile: the smallest value with at least ``q`` of the data at or below.

    ``x[⌈q·n⌉ − 1]`` with ``q·n`` computed exactly on the decimal reading of ``q`` (so
    ``0.7 × 10`` is 7, not 7.000000000000001). Always an observed value; ``q = 0`` gives min.
    """
    from fractions import Fraction  # local: only quantile views pay for it

    rank = math.ceil(Fraction(repr(q)) * len(sorted_values))
    return sorted_values[max(rank, 1) - 1]


def combine(spec: ViewSpec, group: GroupKey, parts: list[Partial]) -> GroupTotals:
    """Finalise one group from the partials of all sources."""
    subjects: set[str] = set().union(*(p.subjects for p in parts))
    measures: dict[str, MeasureValue] = {}
    for m in spec.measures:
        measures[m.name] = _measure(m.kind, m.field, m.q, parts, len(subjects))
    names = [d.name for d in spec.dimensions]
    return GroupTotals(
        dict(zip(names, group, strict=True)), sum(p.events for p in parts), len(subjects), measures
    )


def _measure(
    kind: str, field: str | None, q: tuple[float, ...], parts: list[Partial], subjects: int
) -> MeasureValue:
    if kind == "count":
        return sum(p.events for p in parts)
    if kind == "distinct_subjects":
        return subjects
    assert field is not None  # noqa: S101 - guaranteed by MeasureSpec validation
    if kind == "distinct":
        return len(set().union(*(p.distinct.get(field, ()) for p in parts)))
    if kind in ("sum", "mean"):
        total = math.fsum(x for p in parts for x in p.sums.get(field, ()))
        if kind == "sum":
            return total
        n = sum(p.counts.get(field, 0) for p in parts)
        return total / n if n else None
    values = sorted(x for p in parts for x in p.values.get(field, ()))
    return [nearest_rank(values, qi) for qi in q] if values else None


class Merger:
    """Merges partials of a fixed set of sources (implements ``base.WindowMerger``)."""

    def __init__(self, spec: ViewSpec, sources: Collection[str], noise_key: bytes | None) -> None:
        if not sources:
            msg = "a merger needs at least one source"
            raise PolicyError(msg)
        if spec.noise is not None and noise_key is None:
            msg = f"view {spec.view} has noise but no noise key was given"
            raise PolicyError(msg)
        self.spec = spec
        self.noise_key = noise_key
        self.watermarks: dict[str, int] = dict.fromkeys(sources, NO_WATERMARK)
        # Each source's watermark before any end of stream: how far time has really passed.
        self.clocks: dict[str, int] = dict.fromkeys(sources, NO_WATERMARK)
        self.horizon = NO_WATERMARK
        self.last_data: int | None = None
        """Start of the latest window with events released (None before the first)."""
        self.reported_to: int | None = None
        """End of the latest window released, with events or empty (None before the first)."""
        self.stale_partials = 0
        self._open: dict[int, dict[GroupKey, dict[str, Partial]]] = {}
        n = spec.noise
        self.ledger = (
            EpsilonLedger(n.epsilon, n.budget, n.period_ms, draws_per_window(spec.measures))
            if n
            else None
        )

    def merge(self, partials: Iterable[Partial]) -> None:
        """Union partials in (larger ``through`` wins); released windows are not reopened."""
        width = self.spec.window_ms
        for part in partials:
            if part.source not in self.watermarks:
                msg = f"partial from unknown source {part.source!r}"
                raise PolicyError(msg)
            if part.window_start + width <= self.horizon:
                self.stale_partials += 1
                continue
            by_source = self._open.setdefault(part.window_start, {}).setdefault(part.group, {})
            held = by_source.get(part.source)
            if held is None or part.through > held.through:
                by_source[part.source] = part

    def observe_watermark(self, source: str, watermark: int) -> None:
        """Advance a source's watermark (never backwards)."""
        if source not in self.watermarks:
            msg = f"watermark from unknown source {source!r}"
            raise PolicyError(msg)
        self.watermarks[source] = max(self.watermarks[source], watermark)
        if watermark != END_OF_STREAM:
            self.clocks[source] = max(self.clocks[source], watermark)

    def release_ready(self) -> list[Release]:
        """Release, in time order, every window closed on all sources (with events, or empty
        after the first with events); then evict it."""
        threshold = min(self.watermarks.values())
        if threshold == NO_WATERMARK:
            return []
        width, delay = self.spec.window_ms, self.spec.delay_ms
        ready = sorted(s for s in self._open if s + width + delay <= threshold)
        releases: list[Release] = []
        marker = links_only_group(self.spec) if self.spec.linked else None
        for start in ready:
            groups = self._open.pop(start)
            if marker is not None and set(groups) == {marker}:
                continue  # only linked views' events: no event of this view (maybe empty)
            releases += self._empty_before(start)
            releases.append(self._release(start, groups))
            self.last_data, self.reported_to = start, start + width
        # Trailing empty windows: closed by time itself, not by an end of stream. Below the
        # threshold, so no window with events can still be open there.
        closed_to = min(self.clocks.values()) - delay
        releases += self._empty_before(closed_to - width + 1)
        self.horizon = max(self.horizon, threshold - delay)
        return releases

    def _empty_before(self, limit: int) -> list[Release]:
        """Empty windows from the last one released up to ``limit`` (a window start; not
        included), at most ``EMPTY_WINDOWS_AFTER_DATA`` after the last window with events."""
        if self.last_data is None or self.reported_to is None:
            return []
        width = self.spec.window_ms
        stop = min(limit, self.last_data + (EMPTY_WINDOWS_AFTER_DATA + 1) * width)
        out = [self._release(start, {}) for start in range(self.reported_to, stop, width)]
        if out:
            self.reported_to = out[-1].window.end
        return out

    def _release(self, start: int, groups: dict[GroupKey, dict[str, Partial]]) -> Release:
        spec = self.spec
        secondary = None
        if spec.linked:
            secondary = _member_of(spec, self._linked_decision(groups))
            groups = {g: by for g, by in groups.items() if g != links_only_group(spec)}
        totals = [combine(spec, g, [by[s] for s in sorted(by)]) for g, by in groups.items()]
        epsilon = 0.0
        results: list[GroupResult] = []
        noise, key = spec.noise, self.noise_key
        if self.ledger is not None and noise is not None and key is not None:

            def keep(t: GroupTotals) -> bool:
                return released(
                    t.subjects, spec.k, noise, key, spec.contract, spec.view, start, t.group
                )

            kept, report = suppress(totals, spec.k, keep)
            if not self.ledger.charge(start):
                report = withhold(totals, spec.k, BUDGET_EXHAUSTED)
                kept = []
            else:
                epsilon = float(self.ledger.cost)  # ε × (noised measures + release decision)
            results = [
                GroupResult(
                    t.group,
                    noisy_measures(
                        t.measures,
                        spec.measures,
                        noise,
                        key,
                        spec.contract,
                        spec.view,
                        start,
                        t.group,
                    ),
                )
                for t in kept
            ]
        else:
            kept, report = suppress(totals, spec.k, secondary=secondary)
            results = [GroupResult(t.group, t.measures) for t in kept]
        kid = key_id(spec.contract, start // spec.rotation_ms)
        return Release(
            spec.contract,
            spec.view,
            Window(start, start + spec.window_ms),
            tuple(results),
            report,
            (kid,),
            epsilon,
        )

    def _linked_decision(self, groups: dict[GroupKey, dict[str, Partial]]) -> frozenset[GroupKey]:
        """The groups of this view withheld for the sake of its linked views (secondary)."""
        atoms: dict[Atom, set[str]] = {}
        for by_source in groups.values():
            for part in by_source.values():
                for atom, subjects in part.links.items():
                    atoms.setdefault(atom, set()).update(subjects)
        decision = decide(atoms, [v.k for v in self.spec.linked])
        return decision.secondary[self.spec.link_index]

    @property
    def open_windows(self) -> int:
        """Windows held in memory."""
        return len(self._open)

    def snapshot(self) -> dict[str, Any]:
        """JSON-compatible state: watermarks, horizon, open partials, ε ledger."""
        return {
            "watermarks": dict(self.watermarks),
            "clocks": dict(self.clocks),
            "horizon": self.horizon,
            "last_data": self.last_data,
            "reported_to": self.reported_to,
            "stale_partials": self.stale_partials,
            "open": [
                p.to_dict()
                for groups in self._open.values()
                for by in groups.values()
                for p in by.values()
            ],
            "ledger": self.ledger.to_dict() if self.ledger else None,
        }

    def snapshot_json(self) -> bytes:
        """``snapshot()`` as JSON with sorted keys, without re-serialising the open partials:
        each one's JSON is computed once (``Partial.frozen_json``)."""
        return b"".join(self.snapshot_chunks())

    def snapshot_chunks(self) -> list[bytes]:
        """``snapshot_json`` in pieces, for a caller that joins them into a larger record: the
        snapshot runs to megabytes, and joining once copies it once (issue 17: it was copied
        at every concatenation, about ten times per state record)."""

        def dumps(value: Any) -> bytes:
            return orjson.dumps(value, option=orjson.OPT_SORT_KEYS)

        chunks = [
            b'{"clocks":',
            dumps(self.clocks),
            b',"horizon":',
            dumps(self.horizon),
            b',"last_data":',
            dumps(self.last_data),
            b',"ledger":',
            dumps(self.ledger.to_dict() if self.ledger else None),
            b',"open":[',
        ]
        first = True
        for groups in self._open.values():
            for by in groups.values():
                for p in by.values():
                    if not first:
                        chunks.append(b",")
                    chunks.append(p.frozen_json())
                    first = False
        chunks += [
            b'],"reported_to":',
            dumps(self.reported_to),
            b',"stale_partials":',
            dumps(self.stale_partials),
            b',"watermarks":',
            dumps(self.watermarks),
            b"}",
        ]
        return chunks

    def restore(self, state: dict[str, Any]) -> None:
        """Reload a ``snapshot`` (the source set must be the same)."""
        if set(state["watermarks"]) != set(self.watermarks):
            msg = "snapshot was taken over a different set of sources"
            raise PolicyError(msg)
        self.watermarks = {s: int(w) for s, w in state["watermarks"].items()}
        self.clocks = {s: int(w) for s, w in state["clocks"].items()}
        self.horizon = int(state["horizon"])
        self.last_data = _optional_int(state["last_data"])
        self.reported_to = _optional_int(state["reported_to"])
        self.stale_partials = int(state["stale_partials"])
        self._open = {}
        self.merge(Partial.from_dict(d) for d in state["open"])
        if self.ledger is not None and state["ledger"] is not None:
            self.ledger.load(state["ledger"])


def _member_of(spec: ViewSpec, withheld: frozenset[GroupKey]) -> Callable[[GroupTotals], bool]:
    """Whether a finalised group is one of ``withheld`` (group keys in dimension order)."""
    names = [d.name for d in spec.dimensions]

    def member(totals: GroupTotals) -> bool:
        return tuple(totals.group[n] for n in names) in withheld

    return member


def _optional_int(value: Any) -> int | None:
    return None if value is None else int(value)
