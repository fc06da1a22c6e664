"""Section 4 of the audit: can the linked views of a contract be differenced?

For each set of views released together (``contracts.links``), every window that all of them
have released is handed to the interval attacker (``broker.audit.attacker``): the published
numbers of every view of the set (read from the public topics) and the relations that the raw
events hold (the auditor's own replay, ``broker.audit.replay``). Each withheld group and each
union of withheld groups on one side of a relation is bounded by linear programming; one
pinned with fewer than k distinct subjects is a violation (``pinned-below-k``). The section
states how many groups and targets were checked and how many were pinned, never a value.

Links that secondary suppression does not cover (windows of different lengths) are warnings
(``linked-unprotected``): ``respublica contracts validate`` says the same before anything runs.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from broker.audit.attacker import (
    AttackerError,
    AttackResult,
    ViewWindow,
    attack_window,
    measure_key,
)
from broker.audit.model import Findings, Period
from broker.audit.reconcile import Published
from broker.audit.replay import Cell, GroupText, StreamTally
from contracts.links import link_warnings, linked_sets
from contracts.model import Contract, View

SECTION = "linked views"


def check_linked(
    contract: Contract,
    tallies: Mapping[str, StreamTally],
    published: Mapping[str, Published],
    period: Period,
    findings: Findings,
) -> dict[str, Any]:
    """The section: per linked set, windows, groups and targets checked, pinned (counts)."""
    for path, message in link_warnings(contract):
        findings.warning(SECTION, "linked-unprotected", message, path)
    sets = []
    for found in linked_sets(contract):
        row: dict[str, Any] = {"views": list(found.views), "checked": False}
        try:
            result = _attack_set(contract, found.views, tallies[found.stream], published, period)
        except ImportError:
            findings.warning(
                SECTION,
                "attacker-unavailable",
                "the linked-views attacker needs scipy (pip install 'respublica[audit]')",
            )
        except AttackerError:
            findings.violation(
                SECTION,
                "attacker-inconsistent",
                f"views {', '.join(found.views)}: the published numbers contradict the raw events",
            )
        else:
            row.update(_summary(result))
            for pinned in result.pinned_below_k:
                findings.violation(
                    SECTION,
                    "pinned-below-k",
                    (
                        f"view {pinned.view}: window {pinned.window}: {pinned.groups} withheld "
                        f"group(s) with fewer than k={pinned.k} distinct subjects have their "
                        f"{pinned.measure} pinned by the published numbers of linked views"
                    ),
                )
        sets.append(row)
    return {"sets": sets}


def _summary(result: AttackResult) -> dict[str, Any]:
    return {
        "checked": True,
        "windows": result.windows,
        "withheld_groups": result.groups,
        "targets": result.targets,
        "pinned": len(result.pinned),
        "pinned_below_k": len(result.pinned_below_k),
    }


def _attack_set(
    contract: Contract,
    names: tuple[str, ...],
    tally: StreamTally,
    published: Mapping[str, Published],
    period: Period,
) -> AttackResult:
    result = AttackResult()
    views = [contract.view(name) for name in names]
    atoms = tally.atoms.get(names, {})
    for start in sorted(atoms):
        if not period.contains(start):
            continue
        if not all(start in published[name].reports for name in names):
            continue  # not released by every view yet
        windows = [
            _view_window(view, tally.views[view.name].cells, published[view.name], start)
            for view in views
        ]
        result.add(attack_window(start, windows, atoms[start]))
    return result


def _view_window(
    view: View, cells: Mapping[tuple[int, GroupText], Cell], published: Published, start: int
) -> ViewWindow:
    keys = {m.name: measure_key(m.type, getattr(m, "field", None)) for m in view.measures}
    shown = {
        group: {key: float(row.measures[name]) for name, key in keys.items() if key is not None}
        for group, row in published.groups.get(start, {}).items()
    }
    mine = {group: cell for (s, group), cell in cells.items() if s == start}
    truth = {group: _truth(view, cell) for group, cell in mine.items()}
    subjects = {group: frozenset(cell.subjects) for group, cell in mine.items()}
    return ViewWindow(view.name, view.k, shown, truth, subjects)


def _truth(view: View, cell: Cell) -> dict[str, float]:
    out: dict[str, float] = {}
    for measure in view.measures:
        field = getattr(measure, "field", None)
        key = measure_key(measure.type, field)
        if key is None:
            continue
        if measure.type == "count":
            out[key] = float(cell.events)
        elif measure.type == "distinct_subjects":
            out[key] = float(len(cell.subjects))
        elif measure.type == "sum":
            out[key] = cell.sums.get(str(field), 0.0)
        else:
            out[key] = float(len(cell.distinct.get(str(field), ())))
    return out
