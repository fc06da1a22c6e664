"""The interval attacker: can anything a reader of every public view writes down pin a
withheld group?

For one window of a set of linked views (``contracts.links``), the attacker takes every
published number and every relation between the views that the data hold, and by linear
programming (``scipy.optimize.linprog``, HiGHS) computes, for each withheld group and for each
union of the withheld groups of one side of a relation, the smallest and largest value of each
additive measure consistent with all of it (withheld values are non-negative when the measure's
true values are; counts relaxed to reals). A target is **pinned** when its minimum equals its
maximum; pinned with fewer than k distinct subjects is a disclosure.

Relations. Join the groups of two views that share an *atom* (the events that fall in one
group of each view, ``policies.secondary``); in each connected block, a measure adds up to the
same total on both sides exactly when the true totals agree (no event that only one view folds,
no subject counted in two groups on one side only). The attacker is given those that hold:
it is the strongest analyst, who knows which equalities the data satisfy (where zones cover the
territory, which H3 children lie inside their parent). True values are used for nothing else:
never as a constraint on a withheld group.

Pure computation (no Kafka): the tests build its input from the batch oracle, the audit
(``broker.audit.linked``) from its own replay of the raw topic. Results are counts and the
names of views and measures, never a value.
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

GroupKey = tuple[Any, ...]
Atom = tuple[GroupKey | None, ...]
Node = tuple[int, GroupKey]
RELATIVE_TOLERANCE = 1e-6


class AttackerError(RuntimeError):
    """The linear system is inconsistent: a relation given to the attacker does not hold."""


@dataclass(frozen=True)
class ViewWindow:
    """One view's window as the attacker sees it, plus the truth that scores the attack.

    ``published``: group → additive measure → published value (what everyone reads).
    ``truth``: every group with events → measure → true value (decides which relations hold).
    ``subjects``: every group with events → its distinct subjects (decides "below k").
    Measure keys: ``count``, ``distinct_subjects``, ``sum:<field>``, ``distinct:<field>``.
    """

    view: str
    k: int
    published: Mapping[GroupKey, Mapping[str, float]]
    truth: Mapping[GroupKey, Mapping[str, float]]
    subjects: Mapping[GroupKey, frozenset[Hashable]]

    @property
    def withheld(self) -> list[GroupKey]:
        """Groups with events that were not published, in a stable order."""
        return sorted((g for g in self.truth if g not in self.published), key=repr)


@dataclass(frozen=True)
class Pinned:
    """A target whose value every consistent solution agrees on (counts only, no value)."""

    window: int
    view: str
    measure: str
    groups: int
    subjects: int
    k: int


@dataclass
class AttackResult:
    """What the attacker checked and found, over one or more windows."""

    windows: int = 0
    groups: int = 0
    """Withheld groups looked at."""
    targets: int = 0
    """(target, measure) pairs solved: single withheld groups and unions of them."""
    pinned: list[Pinned] = field(default_factory=list)

    @property
    def pinned_below_k(self) -> list[Pinned]:
        """The disclosures: pinned targets with fewer than k distinct subjects."""
        return [p for p in self.pinned if p.subjects < p.k]

    def add(self, other: AttackResult) -> None:
        """Accumulate another result into this one."""
        self.windows += other.windows
        self.groups += other.groups
        self.targets += other.targets
        self.pinned += other.pinned


def attack_window(
    start: int, views: Sequence[ViewWindow], atoms: Iterable[Atom], *, lp_only: bool = False
) -> AttackResult:
    """Bounds of every withheld group and union of one window of a linked set.

    ``lp_only`` solves two LPs per target even where the span test decides (tests compare)."""
    atoms = list(atoms)
    result = AttackResult(windows=1, groups=sum(len(v.withheld) for v in views))
    measures = sorted({m for v in views for g in v.truth.values() for m in g})
    blocks = {
        (i, j): _blocks(atoms, i, j) for i in range(len(views)) for j in range(i + 1, len(views))
    }
    for measure in measures:
        _attack_measure(start, views, blocks, measure, result, lp_only)
    return result


def _attack_measure(
    start: int,
    views: Sequence[ViewWindow],
    blocks: Mapping[tuple[int, int], list[list[Node]]],
    measure: str,
    result: AttackResult,
    lp_only: bool,
) -> None:
    variables = [(i, g) for i, v in enumerate(views) for g in v.withheld if measure in v.truth[g]]
    if not variables:
        return
    index = {node: n for n, node in enumerate(variables)}
    rows: list[list[float]] = []
    rhs: list[float] = []
    targets: dict[frozenset[Node], None] = {frozenset([node]): None for node in variables}
    for (i, j), found in blocks.items():
        if not _has(views[i], measure) or not _has(views[j], measure):
            continue
        for block in found:
            row, value = _relation(views, block, (i, j), measure, index)
            if row is None:
                continue
            rows.append(row)
            rhs.append(value)
            for side in (i, j):
                union = frozenset(n for n in block if n[0] == side and n in index)
                if len(union) > 1:
                    targets[union] = None
    negative = any(t.get(measure, 0) < 0 for v in views for t in v.truth.values())
    positive = all(views[i].truth[g][measure] > 0 for i, g in variables)
    # Every withheld value is positive (counts always are): then the true point lies inside
    # the orthant, no bound can bind on every solution, and a target is pinned exactly when
    # the equalities alone determine it (its row lies in their span). Otherwise: LP.
    span = _row_space(rows) if rows and positive and not lp_only else None
    for target in targets:
        result.targets += 1
        if not rows:
            continue
        pinned = (
            _in_span(target, index, span)
            if span is not None
            else _pinned(target, index, rows, rhs, negative)
        )
        if pinned:
            view = views[next(iter(target))[0]]
            subjects = set().union(*(view.subjects[g] for _, g in target))
            result.pinned.append(
                Pinned(start, view.view, measure, len(target), len(subjects), view.k)
            )


def _has(view: ViewWindow, measure: str) -> bool:
    return any(measure in values for values in view.truth.values())


def _relation(
    views: Sequence[ViewWindow],
    block: list[Node],
    pair: tuple[int, int],
    measure: str,
    index: Mapping[Node, int],
) -> tuple[list[float] | None, float]:
    """``Σ withheld(first) − Σ withheld(second) = published(second) − published(first)`` over
    one block, if the true totals of the two sides agree; else (None, 0)."""
    totals = [0.0, 0.0]
    published = [0.0, 0.0]
    row = [0.0] * len(index)
    for view, group in block:
        side = 0 if view == pair[0] else 1
        totals[side] += views[view].truth[group].get(measure, 0.0)
        shown = views[view].published.get(group)
        if shown is None:
            row[index[(view, group)]] = 1.0 if side == 0 else -1.0
        else:
            published[side] += float(shown[measure])
    if not _close(totals[0], totals[1]) or not any(row):
        return None, 0.0
    return row, published[1] - published[0]


def _pinned(
    target: frozenset[Node],
    index: Mapping[Node, int],
    rows: list[list[float]],
    rhs: list[float],
    negative: bool,
) -> bool:
    from scipy.optimize import linprog  # local: only the attacker needs scipy

    cost = [0.0] * len(index)
    for node in target:
        cost[index[node]] = 1.0
    bounds = (None, None) if negative else (0, None)
    low = linprog(cost, A_eq=rows, b_eq=rhs, bounds=bounds, method="highs")
    high = linprog([-c for c in cost], A_eq=rows, b_eq=rhs, bounds=bounds, method="highs")
    if low.status == 2 or high.status == 2:
        msg = "the published numbers contradict a relation given to the attacker"
        raise AttackerError(msg)
    if low.status != 0 or high.status != 0:  # unbounded: certainly not pinned
        return False
    return _close(low.fun, -high.fun)


def _row_space(rows: list[list[float]]) -> Any:
    """An orthonormal basis of the span of the equality rows (by SVD)."""
    import numpy as np  # local: only the attacker needs numpy

    matrix = np.asarray(rows, dtype=float)
    _, singular, vt = np.linalg.svd(matrix, full_matrices=False)
    rank = int((singular > 1e-9 * max(1.0, float(singular[0]))).sum())
    return vt[:rank]


def _in_span(target: frozenset[Node], index: Mapping[Node, int], basis: Any) -> bool:
    """The target's sum is fixed by the equalities: its vector has no part outside their span."""
    import numpy as np

    cost = np.zeros(len(index))
    for node in target:
        cost[index[node]] = 1.0
    residual = cost - basis.T @ (basis @ cost)
    return bool(np.linalg.norm(residual) < 1e-7)


def _close(a: float, b: float) -> bool:
    return math.isclose(a, b, rel_tol=RELATIVE_TOLERANCE, abs_tol=1e-6)


def _blocks(atoms: Sequence[Atom], i: int, j: int) -> list[list[Node]]:
    """Groups of views i and j joined when they share an atom (connected components).

    Derived here from the atoms by scipy's graph components, not with the worker's union-find
    (``policies.secondary``): the audit checks the decision, so it does not share its code."""
    import numpy as np  # local: only the attacker needs numpy and scipy
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    nodes: dict[Node, int] = {}
    edges: list[tuple[int, int]] = []
    for atom in atoms:
        present = [
            nodes.setdefault((v, g), len(nodes)) for v in (i, j) if (g := atom[v]) is not None
        ]
        if len(present) == 2:
            edges.append((present[0], present[1]))
    if not nodes:
        return []
    rows = np.fromiter((a for a, _ in edges), dtype=np.int64, count=len(edges))
    cols = np.fromiter((b for _, b in edges), dtype=np.int64, count=len(edges))
    graph = coo_matrix((np.ones(len(edges)), (rows, cols)), shape=(len(nodes), len(nodes)))
    _, labels = connected_components(graph, directed=False)
    out: dict[int, list[Node]] = {}
    for node, position in nodes.items():
        out.setdefault(int(labels[position]), []).append(node)
    return list(out.values())


def measure_key(kind: str, field: str | None) -> str | None:
    """The attacker's name of an additive measure; None for mean and quantiles."""
    if kind in ("count", "distinct_subjects"):
        return kind
    if kind in ("sum", "distinct") and field is not None:
        return f"{kind}:{field}"
    return None
