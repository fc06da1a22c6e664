"""The batch oracle: a deliberately simple, independent computation of every release.

Sort by time, project (default deny), filter, place in a window and a group, pseudonymise,
then compute each measure from the raw list of rows of the group, suppress, noise. It shares
only primitives with the streaming path (``generalise`` via the spec's dimension functions,
``Pseudonymiser``, the keyed noise draw) and never calls ``aggregate`` or ``window``.
There is no lateness in batch: every window with at least one placed event is released, and
so is every window without one that follows a window with events (0 groups), at most
``EMPTY_WINDOWS_AFTER_DATA`` in a row, up to the last window with events or, when the caller
says how far time has passed (``watermark``: the stream's watermark, lowest over its sources,
before any end of stream), up to every window that ends by ``watermark − delay``.
Copies of an event (same subject, same canonical event id, same window) count once: the first
in input order (the order of the raw topic), checked before the rows are sorted by time.
A view linked to others (``ViewSpec.linked``) places every record in the groups of each view of
its set, as that view alone would fold it (placed, first copy), and hands the resulting atoms
to ``policies.secondary.decide``, whose secondary groups it withholds too. A
noised view then keeps, per subject and window, its first ``max_groups`` groups and its first
``max_contributions`` events in each, in input order too, and clamps summed values.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from fractions import Fraction
from typing import Any

from policies.base import (
    EMPTY_WINDOWS_AFTER_DATA,
    GroupResult,
    OutsideTerritory,
    Record,
    Release,
    SuppressionReport,
    Window,
)
from policies.noise import clamp, draws_per_window, noisy_measures, released
from policies.pseudonymise import KeyDestroyedError, KeyRing, Pseudonymiser, canonical_id, key_id
from policies.secondary import Atom, GroupKey, decide
from policies.spec import ViewSpec, view_spec

Row = tuple[str, Record]  # (subject pseudonym, projected record)


def evaluate(
    contract: Any,
    events: Mapping[str, Iterable[Record]],
    *,
    keyring: KeyRing,
    noise_key: bytes | None = None,
    watermarks: Mapping[str, int] | None = None,
) -> dict[str, list[Release]]:
    """Releases of every view of ``contract``; ``events`` maps stream name → records,
    ``watermarks`` stream name → how far time has passed (see ``evaluate_view``)."""
    pseudonymiser = Pseudonymiser(keyring, contract.id)
    streams = {name: list(records) for name, records in events.items()}
    return {
        view.name: evaluate_view(
            view_spec(contract, view.name),
            streams.get(view.stream, []),
            pseudonymiser,
            noise_key,
            watermark=(watermarks or {}).get(view.stream),
        )
        for view in contract.views
    }


def evaluate_view(
    spec: ViewSpec,
    records: Iterable[Record],
    pseudonymiser: Pseudonymiser,
    noise_key: bytes | None = None,
    *,
    watermark: int | None = None,
) -> list[Release]:
    """Every window of one view, in time order: with events, and empty after one of those.

    ``watermark`` (event time, ms) says how far time has passed: empty windows after the last
    one with events are released up to those ending by ``watermark − delay``."""
    cells: dict[int, dict[tuple[Any, ...], list[Row]]] = {}
    kept: list[tuple[int, tuple[Any, ...], str, Record]] = []
    seen: set[tuple[int, str, str]] = set()
    contributions: dict[tuple[int, str], dict[tuple[Any, ...], int]] = {}
    atoms = _Atoms(spec, pseudonymiser)
    minimiser = spec.minimiser()
    for record in records:
        row = minimiser.project(record)
        if not spec.passes(row):
            continue
        atoms.add(row)
        try:
            group = tuple(d.locate(row) for d in spec.dimensions)
        except OutsideTerritory:
            continue
        start = (row[spec.time_field] // spec.window_ms) * spec.window_ms
        try:
            subject = pseudonymiser.pseudonym(
                spec.subject_field, row[spec.subject_field], start // spec.rotation_ms
            )
        except KeyDestroyedError:
            continue
        event_id = row.get(spec.event_id_field) if spec.event_id_field else None
        if event_id is not None:
            identity = (start, subject, canonical_id(event_id))
            if identity in seen:
                continue
            seen.add(identity)
        if spec.noise is not None:
            mine = contributions.setdefault((start, subject), {})
            if group not in mine and len(mine) == spec.noise.max_groups:
                continue  # beyond the subject's groups of this window
            if mine.get(group, 0) == spec.noise.max_contributions:
                continue  # beyond its events in this group
            mine[group] = mine.get(group, 0) + 1
        kept.append((start, group, subject, row))
    for start, group, subject, row in sorted(kept, key=lambda k: k[3][spec.time_field]):
        cells.setdefault(start, {}).setdefault(group, []).append((subject, row))
    budget_used: dict[int, int] = {}
    return [
        _window(
            spec,
            start,
            cells.get(start, {}),
            pseudonymiser,
            noise_key,
            budget_used,
            atoms.withheld(start),
        )
        for start in _reported(sorted(cells), spec.window_ms, spec.delay_ms, watermark)
    ]


class _Atoms:
    """Every record's group in each view of a linked set, per window (``policies.secondary``)."""

    def __init__(self, spec: ViewSpec, pseudonymiser: Pseudonymiser) -> None:
        self.spec = spec
        self.pseudonymiser = pseudonymiser
        self.by_window: dict[int, dict[Atom, set[str]]] = {}
        self.seen: list[set[tuple[int, str, str]]] = [set() for _ in spec.linked]

    def add(self, row: Record) -> None:
        """Place one record (filter passed) in every view of the set that folds it."""
        spec = self.spec
        if not spec.linked:
            return
        placed = [_placed(v.dimensions, row) for v in spec.linked]
        if all(group is None for group in placed):
            return
        start = (row[spec.time_field] // spec.window_ms) * spec.window_ms
        try:
            subject = self.pseudonymiser.pseudonym(
                spec.subject_field, row[spec.subject_field], start // spec.rotation_ms
            )
        except KeyDestroyedError:
            return
        event_id = row.get(spec.event_id_field) if spec.event_id_field else None
        identity = None if event_id is None else (start, subject, canonical_id(event_id))
        atom: list[GroupKey | None] = []
        for seen, group in zip(self.seen, placed, strict=True):
            if group is not None and identity is not None:
                if identity in seen:
                    group = None
                else:
                    seen.add(identity)
            atom.append(group)
        if any(group is not None for group in atom):
            self.by_window.setdefault(start, {}).setdefault(tuple(atom), set()).add(subject)

    def withheld(self, start: int) -> frozenset[GroupKey]:
        """The view's groups withheld in window ``start`` for its linked views."""
        if not self.spec.linked:
            return frozenset()
        decision = decide(self.by_window.get(start, {}), [v.k for v in self.spec.linked])
        return decision.secondary[self.spec.link_index]


def _placed(dimensions: Any, row: Record) -> GroupKey | None:
    try:
        return tuple(d.locate(row) for d in dimensions)
    except OutsideTerritory:
        return None


def _reported(starts: list[int], width: int, delay: int, watermark: int | None) -> list[int]:
    """The windows a view reports: each with events, then the empty ones after it, up to the
    next with events, ``EMPTY_WINDOWS_AFTER_DATA`` of them, or the time that has passed."""
    out: list[int] = []
    following_starts: list[int | None] = [*starts[1:], None]
    for start, following in zip(starts, following_starts[: len(starts)], strict=True):
        out.append(start)
        for n in range(1, EMPTY_WINDOWS_AFTER_DATA + 1):
            empty = start + n * width
            if following is not None:
                if empty >= following:
                    break
            elif watermark is None or empty + width + delay > watermark:
                break
            out.append(empty)
    return out


def _window(
    spec: ViewSpec,
    start: int,
    groups: dict[tuple[Any, ...], list[Row]],
    pseudonymiser: Pseudonymiser,
    noise_key: bytes | None,
    budget_used: dict[int, int],
    withheld: frozenset[GroupKey] = frozenset(),
) -> Release:
    names = [d.name for d in spec.dimensions]
    bound = spec.noise.value_bound if spec.noise is not None else None
    published, counts = [], {"groups_out": 0, "events_in": 0, "events_out": 0, "second": 0}
    noise = spec.noise if noise_key is not None else None
    for key, rows in groups.items():
        subjects = len({subject for subject, _ in rows})
        group = dict(zip(names, key, strict=True))
        if (
            subjects < spec.k
            if noise is None or noise_key is None  # (for the type checker: both or neither)
            else not released(
                subjects, spec.k, noise, noise_key, spec.contract, spec.view, start, group
            )
        ):
            counts["groups_out"] += 1
            counts["events_out"] += len(rows)
            continue
        if key in withheld:  # k subjects or more, but derivable from a linked view
            counts["groups_out"] += 1
            counts["events_out"] += len(rows)
            counts["second"] += 1
            continue
        counts["events_in"] += len(rows)
        epoch = start // spec.rotation_ms
        published.append(
            GroupResult(
                group,
                {
                    m.name: _measure(m.kind, m.field, m.q, rows, pseudonymiser, epoch, bound)
                    for m in spec.measures
                },
            )
        )
    report = SuppressionReport(
        spec.k,
        len(published),
        counts["groups_out"],
        counts["events_in"],
        counts["events_out"],
        groups_secondary=counts["second"],
    )
    epsilon = 0.0
    if spec.noise is not None and noise_key is not None:
        period = start // spec.noise.period_ms
        used = budget_used.get(period, 0)
        # Every noised measure and the release decision spend ε (sequential composition).
        cost = Fraction(repr(spec.noise.epsilon)) * draws_per_window(spec.measures)
        if (used + 1) * cost > Fraction(repr(spec.noise.budget)):
            total = sum(len(rows) for rows in groups.values())
            report = SuppressionReport(spec.k, 0, len(groups), 0, total, "budget_exhausted")
            published = []
        else:
            budget_used[period] = used + 1
            epsilon = float(cost)
            published = [
                GroupResult(
                    g.group,
                    noisy_measures(
                        g.measures,
                        spec.measures,
                        spec.noise,
                        noise_key,
                        spec.contract,
                        spec.view,
                        start,
                        g.group,
                    ),
                )
                for g in published
            ]
    return Release(
        spec.contract,
        spec.view,
        Window(start, start + spec.window_ms),
        tuple(published),
        report,
        (key_id(spec.contract, start // spec.rotation_ms),),
        epsilon,
    )


def _numbers(rows: list[Row], field: str, bound: float | None) -> list[float]:
    values = []
    for _, row in rows:
        v = row.get(field)
        if isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v):
            values.append(float(v) if bound is None else clamp(float(v), bound))
    return values


def _measure(
    kind: str,
    field: str | None,
    q: tuple[float, ...],
    rows: list[Row],
    pseudonymiser: Pseudonymiser,
    epoch: int,
    bound: float | None,
) -> Any:
    if kind == "count":
        return len(rows)
    if kind == "distinct_subjects":
        return len({subject for subject, _ in rows})
    assert field is not None  # noqa: S101 - measure specs carry a field for these kinds
    if kind == "distinct":
        return len(
            {
                pseudonymiser.pseudonym(field, row[field], epoch)
                for _, row in rows
                if row.get(field) is not None
            }
        )
    values = _numbers(rows, field, bound)
    if kind == "sum":
        return math.fsum(values)
    if kind == "mean":
        return math.fsum(values) / len(values) if values else None
    return [_quantile(sorted(values), qi) for qi in q] if values else None


def _quantile(ordered: list[float], q: float) -> float:
    """Nearest rank, written as a scan: first value whose rank covers a share q of the data."""
    share = Fraction(repr(q))
    for i, value in enumerate(ordered):
        if Fraction(i + 1, len(ordered)) >= share:
            return value
    return ordered[-1]
