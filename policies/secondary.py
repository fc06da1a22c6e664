"""Secondary suppression: which more groups to withhold so that linked views cannot be
differenced (``contracts.links``).

In: one window of a linked set of views, as its **atoms**: each event placed in a group by at
least one view of the set belongs to the atom ``(group in view 0 or None, group in view 1 or
None, ...)`` (None: that view did not fold the event: outside its zones, say), and the input
maps each atom to the subjects (pseudonyms) of its events. Out: per view, the groups to
withhold, primary (fewer than the view's k subjects) and secondary, separately.

Why atoms. For two views A and B, join every A-group and B-group that share an atom: each
connected component is a *block* where the A-groups and the B-groups cover the same events
(except atoms one of the views does not fold), so any additive measure adds up to the same
total on both sides. This is the finest exact relation anyone can write between the two views,
whatever they know about the geometry (H3 children nest only approximately, zones may or may
not nest): the broker protects what the data hold, not what a contract suggests. In a block,
an analyst who reads both views knows ``withheld(A) − withheld(B)`` (block total minus the
published groups, on each side). That difference is the sum over the events of the atoms
covered by exactly one side's withheld groups; for subjects that stay in one atom per window
(a listing, a home), its subjects are ``P Δ Q`` where P and Q are the subjects of each side's
withheld groups. The rule: in every block of every pair of linked views, ``|P Δ Q|`` is 0 or at
least k (the largest k of the set). When a block breaks it, the smallest published group of
the block that repairs it is withheld too (fewest subjects, then view order, then group value),
or, when none repairs it alone, the smallest one on the side with more subjects of its own; and
this repeats over every block of every pair until nothing changes. A block where one side
withholds nothing is the grand-total (margin) rule: the withheld groups of the other side must
together hold at least k subjects, or be none.

Pairs are not the whole story: with three views, relations chain (a district minus the quarters
inside it gives what lies outside every quarter, which a cell view may hold alone). So the rule
ends with an exact check (``_determined``): with the atom totals as unknowns, a published group
states the sum over its atoms, and a withheld total is determined exactly when its 0/1 row lies
in the span of the published rows (Gaussian elimination modulo a 61-bit prime: integers only,
the same answer on every machine). While a withheld group, or the withheld groups of one side
of a block, with fewer than k subjects is determined, the smallest published group sharing an
atom with it is withheld too, and the pairwise rule runs again.

Deterministic: the input is a set (no order of arrival matters), ties break on the group's
values as text, and the audit (``broker.audit``) reproduces the decision from canonical
identifiers, which relate one to one to the pseudonyms of a window. Costs, limits and the
attacker that checks the rule: docs/privacy.md, "Secondary suppression".
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

GroupKey = tuple[Any, ...]
Atom = tuple[GroupKey | None, ...]
Node = tuple[int, GroupKey]  # (view index in the set, group)


@dataclass(frozen=True)
class Decision:
    """Per view of the linked set (in its order): groups withheld, primary and secondary."""

    primary: tuple[frozenset[GroupKey], ...]
    secondary: tuple[frozenset[GroupKey], ...]

    def withheld(self, view: int) -> frozenset[GroupKey]:
        """Every group the view must not publish."""
        return self.primary[view] | self.secondary[view]


def group_order(group: GroupKey) -> tuple[tuple[bool, str], ...]:
    """How ties between groups break: by their values as published text (``None`` first), so
    the worker (typed values) and the audit (text) order groups alike."""
    return tuple((value is not None, "" if value is None else str(value)) for value in group)


def members(atoms: Mapping[Atom, Collection[str]], views: int) -> list[dict[GroupKey, set[str]]]:
    """Per view, each group's subjects (the union of its atoms')."""
    out: list[dict[GroupKey, set[str]]] = [{} for _ in range(views)]
    for atom, subjects in atoms.items():
        for i, group in enumerate(atom):
            if group is not None:
                out[i].setdefault(group, set()).update(subjects)
    return out


def decide(atoms: Mapping[Atom, Collection[str]], ks: Sequence[int]) -> Decision:
    """The groups each view of a linked set withholds in one window (see the module doc)."""
    n = len(ks)
    groups = members(atoms, n)
    primary = [frozenset(g for g, s in groups[i].items() if len(s) < ks[i]) for i in range(n)]
    withheld = [set(p) for p in primary]
    k = max(ks)
    blocks = [
        (i, j, block) for i in range(n) for j in range(i + 1, n) for block in _blocks(atoms, i, j)
    ]
    _pairwise(blocks, groups, withheld, k)
    while (exposed := _determined(atoms, blocks, groups, withheld, k)) is not None:
        _withhold_next_to(exposed, atoms, groups, withheld)
        _pairwise(blocks, groups, withheld, k)
    return Decision(
        tuple(primary),
        tuple(frozenset(withheld[i] - primary[i]) for i in range(n)),
    )


def _pairwise(
    blocks: list[tuple[int, int, list[Node]]],
    groups: list[dict[GroupKey, set[str]]],
    withheld: list[set[GroupKey]],
    k: int,
) -> None:
    """The rule on every block of every pair, until no block breaks it."""
    changed = True
    while changed:
        changed = False
        for i, j, block in blocks:
            while _repair(block, (i, j), groups, withheld, k):
                changed = True


def _blocks(atoms: Mapping[Atom, Collection[str]], i: int, j: int) -> list[list[Node]]:
    """Connected components of view i's and view j's groups, joined by shared atoms."""
    parent: dict[Node, Node] = {}

    def root(node: Node) -> Node:
        parent.setdefault(node, node)
        while parent[node] != node:
            parent[node] = parent[parent[node]]
            node = parent[node]
        return node

    for atom in atoms:
        a, b = atom[i], atom[j]
        if a is not None and b is not None:
            parent[root((j, b))] = root((i, a))
        elif a is not None:
            root((i, a))
        elif b is not None:
            root((j, b))
    out: dict[Node, list[Node]] = {}
    for node in parent:
        out.setdefault(root(node), []).append(node)
    return [sorted(b, key=lambda nd: (nd[0], group_order(nd[1]))) for b in out.values()]


def _repair(
    block: list[Node],
    pair: tuple[int, int],
    groups: list[dict[GroupKey, set[str]]],
    withheld: list[set[GroupKey]],
    k: int,
) -> bool:
    """Withhold one more group of the block if its difference is pinned below k; True if so."""
    p, q = _sides(block, pair, groups, withheld)
    if not 0 < len(p ^ q) < k:
        return False
    candidates = sorted(
        (node for node in block if node[1] not in withheld[node[0]]),
        key=lambda nd: (len(groups[nd[0]][nd[1]]), nd[0], group_order(nd[1])),
    )
    if not candidates:
        return False  # everything withheld: what remains unknown is what one view did not fold
    for view, group in candidates:
        added = groups[view][group]
        after = (p | added) ^ q if view == pair[0] else p ^ (q | added)
        if len(after) == 0 or len(after) >= k:
            withheld[view].add(group)
            return True
    heavier = pair[0] if len(p - q) >= len(q - p) else pair[1]
    view, group = next((nd for nd in candidates if nd[0] == heavier), candidates[0])
    withheld[view].add(group)
    return True


def _sides(
    block: list[Node],
    pair: tuple[int, int],
    groups: list[dict[GroupKey, set[str]]],
    withheld: list[set[GroupKey]],
) -> tuple[set[str], set[str]]:
    p: set[str] = set()
    q: set[str] = set()
    for view, group in block:
        if group in withheld[view]:
            (p if view == pair[0] else q).update(groups[view][group])
    return p, q


# --- the safety net: what the published groups determine, exactly ---------------------------

PRIME = 2**61 - 1
"""Ranks are computed modulo this prime: exact integer arithmetic, the same on every machine."""


class Span:
    """The span of sparse 0/1 rows over the integers modulo ``PRIME`` (Gaussian elimination;
    each basis row is kept with a leading 1 at its smallest column)."""

    def __init__(self) -> None:
        self.rows: dict[int, dict[int, int]] = {}

    def _reduce(self, row: Mapping[int, int]) -> dict[int, int]:
        rest = dict(row)
        while True:
            pivots = [c for c in rest if c in self.rows]
            if not pivots:
                return rest
            column = min(pivots)
            factor = rest[column]
            for col, value in self.rows[column].items():
                left = (rest.get(col, 0) - factor * value) % PRIME
                if left:
                    rest[col] = left
                else:
                    rest.pop(col, None)

    def add(self, row: Mapping[int, int]) -> None:
        """Extend the span by one row."""
        rest = self._reduce(row)
        if rest:
            column = min(rest)
            inverse = pow(rest[column], PRIME - 2, PRIME)
            self.rows[column] = {c: v * inverse % PRIME for c, v in rest.items()}

    def __contains__(self, row: Mapping[int, int]) -> bool:
        return not self._reduce(row)


def _determined(
    atoms: Mapping[Atom, Collection[str]],
    blocks: list[tuple[int, int, list[Node]]],
    groups: list[dict[GroupKey, set[str]]],
    withheld: list[set[GroupKey]],
    k: int,
) -> list[Node] | None:
    """A withheld group, or the withheld groups of one side of a block, with fewer than k
    subjects whose total the published groups determine; None when there is none.

    The unknowns are the totals of the atoms (every event is in one atom, and each has at least
    one); a published group tells the sum over its atoms. A sum over atoms is then determined
    exactly when its 0/1 row lies in the span of the published groups' rows. This catches what
    the pairwise rule cannot see: relations that chain through a third view (a district minus
    the quarters inside it gives what lies outside every quarter)."""
    index = {atom: n for n, atom in enumerate(sorted(atoms, key=_atom_order))}
    cover: dict[Node, dict[int, int]] = {}
    for atom, n in index.items():
        for view, group in enumerate(atom):
            if group is not None:
                cover.setdefault((view, group), {})[n] = 1
    span = Span()
    for (view, group), row in sorted(cover.items(), key=lambda item: _node_order(item[0])):
        if group not in withheld[view]:
            span.add(row)
    for target in _targets(blocks, groups, withheld):
        subjects = set().union(*(groups[v][g] for v, g in target))
        if len(subjects) < k:
            row = {c: 1 for node in target for c in cover[node]}
            if row in span:
                return target
    return None


def _targets(
    blocks: list[tuple[int, int, list[Node]]],
    groups: list[dict[GroupKey, set[str]]],
    withheld: list[set[GroupKey]],
) -> list[list[Node]]:
    """Each withheld group alone, then the withheld groups of each side of each block."""
    singles = [[(v, g)] for v in range(len(groups)) for g in sorted(withheld[v], key=group_order)]
    unions = []
    for i, j, block in blocks:
        for side in (i, j):
            union = [node for node in block if node[0] == side and node[1] in withheld[side]]
            if len(union) > 1:
                unions.append(union)
    return singles + unions


def _withhold_next_to(
    target: list[Node],
    atoms: Mapping[Atom, Collection[str]],
    groups: list[dict[GroupKey, set[str]]],
    withheld: list[set[GroupKey]],
) -> None:
    """Withhold the smallest published group that shares an atom with ``target`` (one exists:
    a total no published group touches cannot be determined)."""
    mine = set(target)
    near = {
        (view, group)
        for atom in atoms
        if any((v, g) in mine for v, g in enumerate(atom) if g is not None)
        for view, group in enumerate(atom)
        if group is not None and group not in withheld[view]
    }
    view, group = min(near, key=lambda nd: (len(groups[nd[0]][nd[1]]), _node_order(nd)))
    withheld[view].add(group)


def _node_order(node: Node) -> tuple[int, tuple[tuple[bool, str], ...]]:
    return (node[0], group_order(node[1]))


def _atom_order(atom: Atom) -> tuple[tuple[bool, tuple[tuple[bool, str], ...]], ...]:
    return tuple((g is not None, () if g is None else group_order(g)) for g in atom)
