"""How a view released with linked views folds the atoms of its set (``policies.secondary``).

A linked view's aggregator (``policies.aggregate.Aggregator``) places every event in the groups
of every view of its set, as those views' own aggregators fold it: placed by their dimensions,
and the first copy of its event id in the window (each view's digests are kept here, the
view's own in the aggregator). The event's *atom* is its group in each view, or None where a
view does not fold it. The aggregator keeps, per partial, the subjects of each atom
(``Partial.links``); events it does not fold itself but another view does go to one extra
partial per window, whose group ``links_only_group`` no real group has (one value more than
the view has dimensions). So every view of a set holds the same atoms, and each view's merger
reaches the same decision on its own (docs/architecture.md, "Linked views").
"""

from __future__ import annotations

from typing import Any

from policies.base import OutsideTerritory, Record
from policies.secondary import Atom, GroupKey
from policies.spec import ViewSpec

LINKS_ONLY = "\x00links"


def links_only_group(spec: ViewSpec) -> GroupKey:
    """The group of a linked view's partial holding only atoms (events it did not fold)."""
    return (LINKS_ONLY,) * (len(spec.dimensions) + 1)


def atom_to_json(atom: Atom) -> list[Any]:
    """An atom as JSON: one list of group values (or null) per view of the set."""
    return [None if group is None else list(group) for group in atom]


def atom_from_json(data: list[Any]) -> Atom:
    """Inverse of ``atom_to_json``."""
    return tuple(None if group is None else tuple(group) for group in data)


class LinkedFold:
    """Per source partition of a linked view: placing events in every view of the set, and
    the event digests each other view has folded per open window."""

    def __init__(self, spec: ViewSpec) -> None:
        self.locators = tuple(tuple(d.locate for d in v.dimensions) for v in spec.linked)
        self.own = spec.link_index
        self.links_only = links_only_group(spec)
        self.seen: dict[int, list[set[str]]] = {}  # window start → per view: digests

    def place(self, record: Record) -> list[GroupKey | None]:
        """The record's group in each view of the set (None where a view cannot place it)."""
        return [_place(locators, record) for locators in self.locators]

    def atom(
        self, start: int, digest: str | None, placed: list[GroupKey | None], own_seen: set[str]
    ) -> Atom:
        """The event's group in every view that folds it: None where a view does not place it
        or already folded a copy of it (same digest) in this window. ``own_seen``: the view's
        own digests of the window, which the aggregator keeps."""
        seen = self.seen.get(start)
        if seen is None:
            seen = self.seen[start] = [set() for _ in placed]
        seen[self.own] = own_seen
        atom: list[GroupKey | None] = []
        for i, group in enumerate(placed):
            if group is not None and digest is not None:
                if digest in seen[i]:
                    group = None
                else:
                    seen[i].add(digest)
            atom.append(group)
        return tuple(atom)

    def forget(self, limit: int | None) -> None:
        """Drop the digests of windows starting at or before ``limit`` (None: all)."""
        for start in [s for s in self.seen if limit is None or s <= limit]:
            del self.seen[start]

    def snapshot(self) -> dict[str, list[list[str]]]:
        """The other views' digests per window (the view's own travel with the aggregator)."""
        return {
            str(start): [[] if i == self.own else sorted(d) for i, d in enumerate(sets)]
            for start, sets in self.seen.items()
        }

    def restore(self, state: dict[str, list[list[str]]]) -> None:
        """Reload a ``snapshot``."""
        self.seen = {int(start): [set(d) for d in sets] for start, sets in state.items()}


def _place(locators: tuple[Any, ...], record: Record) -> GroupKey | None:
    try:
        return tuple(locate(record) for locate in locators)
    except OutsideTerritory:
        return None
