"""Linked views for the tests: hand-built sets, the truth of a run, and the attack on it.

``truth`` recomputes, from the records alone and with its own code, every group of every view
of a linked set (all of them, published or not) and the atoms that relate them; ``attack``
feeds the batch oracle's releases and that truth to the interval attacker
(``broker.audit.attacker``).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from broker.audit.attacker import AttackResult, ViewWindow, attack_window, measure_key
from policies.base import OutsideTerritory, Release
from policies.oracle import evaluate_view
from policies.pseudonymise import Pseudonymiser, canonical_id
from policies.spec import DimensionSpec, LinkedView, MeasureSpec, ViewSpec

GroupKey = tuple[Any, ...]


def linked_specs(
    base: ViewSpec, views: Sequence[tuple[str, tuple[DimensionSpec, ...], int]]
) -> list[ViewSpec]:
    """One spec per ``(name, dimensions, k)``, all alike but for those, released together."""
    linked = tuple(LinkedView(name, dims, k) for name, dims, k in views)
    return [
        replace(base, view=name, dimensions=dims, k=k, linked=linked) for name, dims, k in views
    ]


def unlinked(spec: ViewSpec) -> ViewSpec:
    """The same view released on its own (no secondary suppression): the "before"."""
    return replace(spec, linked=())


@dataclass
class GroupTruth:
    """Every event of one group, reduced to the additive measures and the subjects."""

    measures: dict[str, float] = field(default_factory=dict)
    subjects: set[str] = field(default_factory=set)
    distinct: dict[str, set[str]] = field(default_factory=dict)


@dataclass
class Truth:
    """Per window: each view's groups (in set order) and the atoms that relate them."""

    groups: dict[int, list[dict[GroupKey, GroupTruth]]] = field(default_factory=dict)
    atoms: dict[int, set[tuple[GroupKey | None, ...]]] = field(default_factory=dict)


def _place(dims: Sequence[DimensionSpec], record: Mapping[str, Any]) -> GroupKey | None:
    try:
        return tuple(d.locate(record) for d in dims)
    except OutsideTerritory:
        return None


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if math.isfinite(value) else None


def truth(specs: Sequence[ViewSpec], records: Iterable[Mapping[str, Any]]) -> Truth:
    """Every group of every view of a linked set, from the records (first copy counts)."""
    base = specs[0]
    out = Truth()
    seen: list[set[tuple[int, str, str]]] = [set() for _ in specs]
    for record in records:
        if not base.passes(dict(record)):
            continue
        t = record[base.time_field]
        start = t - t % base.window_ms
        subject = canonical_id(record[base.subject_field])
        event_id = record.get(base.event_id_field) if base.event_id_field else None
        atom: list[GroupKey | None] = []
        for i, spec in enumerate(specs):
            group = _place(spec.dimensions, record)
            if group is not None and event_id is not None:
                identity = (start, subject, canonical_id(event_id))
                if identity in seen[i]:
                    group = None
                else:
                    seen[i].add(identity)
            atom.append(group)
            if group is not None:
                by_view = out.groups.setdefault(start, [{} for _ in specs])[i]
                _fold(by_view.setdefault(group, GroupTruth()), spec, subject, record)
        if any(a is not None for a in atom):
            out.atoms.setdefault(start, set()).add(tuple(atom))
    return out


def _fold(cell: GroupTruth, spec: ViewSpec, subject: str, record: Mapping[str, Any]) -> None:
    cell.subjects.add(subject)
    for m in spec.measures:
        key = measure_key(m.kind, m.field)
        if key is None:
            continue
        if m.kind == "count":
            cell.measures[key] = cell.measures.get(key, 0.0) + 1
        elif m.kind == "distinct_subjects":
            cell.measures[key] = float(len(cell.subjects))
        elif m.kind == "sum" and m.field is not None:
            value = _number(record.get(m.field))
            cell.measures[key] = cell.measures.get(key, 0.0) + (value or 0.0)
        elif m.kind == "distinct" and m.field is not None:
            values = cell.distinct.setdefault(m.field, set())
            if record.get(m.field) is not None:
                values.add(canonical_id(record[m.field]))
            cell.measures[key] = float(len(values))


def _published(spec: ViewSpec, release: Release) -> dict[GroupKey, dict[str, float]]:
    names = [d.name for d in spec.dimensions]
    keys = {m.name: measure_key(m.kind, m.field) for m in spec.measures}
    return {
        tuple(g.group[n] for n in names): {
            key: float(g.measures[name])  # type: ignore[arg-type]
            for name, key in keys.items()
            if key is not None
        }
        for g in release.groups
    }


def attack(
    specs: Sequence[ViewSpec],
    releases: Sequence[Sequence[Release]],
    facts: Truth,
    *,
    lp_only: bool = False,
) -> AttackResult:
    """The interval attack on every window of a linked set's releases."""
    result = AttackResult()
    by_window = [{r.window.start: r for r in found} for found in releases]
    for start, groups in sorted(facts.groups.items()):
        windows = []
        for i, spec in enumerate(specs):
            release = by_window[i].get(start)
            published = _published(spec, release) if release is not None else {}
            windows.append(
                ViewWindow(
                    spec.view,
                    spec.k,
                    published,
                    {g: c.measures for g, c in groups[i].items()},
                    {g: frozenset(c.subjects) for g, c in groups[i].items()},
                )
            )
        atoms = facts.atoms.get(start, set())
        result.add(attack_window(start, windows, atoms, lp_only=lp_only))
    return result


def oracle(
    specs: Sequence[ViewSpec], records: Sequence[Mapping[str, Any]], pseudonymiser: Pseudonymiser
) -> list[list[Release]]:
    """The batch oracle's releases of every view of the set."""
    return [evaluate_view(spec, [dict(r) for r in records], pseudonymiser) for spec in specs]


def published_groups(releases: Sequence[Release]) -> int:
    """Groups published over all windows."""
    return sum(len(r.groups) for r in releases)


COUNT_SUM_SUBJECTS = (
    MeasureSpec("events", "count"),
    MeasureSpec("people", "distinct_subjects"),
    MeasureSpec("total", "sum", "v"),
)
