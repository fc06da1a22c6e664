"""Linked views: views of one contract whose published numbers add up to each other's.

A k threshold protects a group only if nothing else published pins its value. Two views of one
stream over the same events are *linked* when an analyst can write an exact relation between
their numbers: the same stream, the same filter, no noise on either, and at least one measure
that adds up over groups in both (``count``, ``sum`` of one field, ``distinct_subjects``, or
``distinct`` of one field: a listing lies in one district and one cell). The district totals
of a window minus its published cells then give the total of the suppressed cells.

Linked views with the same window are released with **secondary suppression**
(``policies.secondary``): each window's decision covers every view of the linked set. What this
module gives: the links (``links``), the sets protected together (``linked_sets``), a plain
explanation of each link for ``respublica contracts show`` (``Link.relation``) and the warnings
of ``respublica contracts validate`` (``link_warnings``) for links that secondary suppression
cannot cover (windows of different lengths) or that make it costly (different k).

The explanation is structural (what nests in what), for people. The broker itself protects
the relations the data hold, computed per window from the events (``policies.secondary``), which
is what the strongest analyst can also write: H3 cells, for instance, nest only approximately
(a point's resolution-8 cell does not always have its resolution-7 cell as parent).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from contracts.model import (
    Contract,
    Dimension,
    FieldDimension,
    GridDimension,
    H3Dimension,
    RoundDimension,
    View,
    ZonesDimension,
)

ADDITIVE = ("count", "distinct_subjects", "sum", "distinct")


@dataclass(frozen=True)
class Link:
    """Two views whose published numbers are related; ``protected`` by secondary suppression."""

    first: str
    second: str
    measures: tuple[str, ...]
    """The additive measures both publish, in words (``count``, ``sum of nights``...)."""
    relation: str
    """What adds up to what, in words."""
    protected: bool
    warning: str | None = None
    """Why secondary suppression does not cover the link, or what it costs (for validate)."""


@dataclass(frozen=True)
class LinkedSet:
    """Views released together: each window's suppression decision covers all of them."""

    stream: str
    views: tuple[str, ...]
    """In contract order."""


def links(contract: Contract) -> list[Link]:
    """Every pair of related views of the contract, in contract order."""
    views = contract.views
    found = []
    for i, first in enumerate(views):
        for second in views[i + 1 :]:
            link = _link(first, second)
            if link is not None:
                found.append(link)
    return found


def linked_sets(contract: Contract) -> list[LinkedSet]:
    """The sets of views protected together: connected by links with the same window."""
    parent: dict[str, str] = {v.name: v.name for v in contract.views}

    def root(name: str) -> str:
        while parent[name] != name:
            parent[name] = parent[parent[name]]
            name = parent[name]
        return name

    for link in links(contract):
        if link.protected:
            parent[root(link.second)] = root(link.first)
    members: dict[str, list[str]] = {}
    for view in contract.views:
        members.setdefault(root(view.name), []).append(view.name)
    return [
        LinkedSet(contract.view(names[0]).stream, tuple(names))
        for names in members.values()
        if len(names) > 1
    ]


def linked_set_of(contract: Contract, view: str) -> tuple[str, ...]:
    """The views released together with ``view`` (itself included), or () if it has none."""
    for found in linked_sets(contract):
        if view in found.views:
            return found.views
    return ()


def link_warnings(contract: Contract) -> list[tuple[str, str]]:
    """``(path, message)`` for every link that secondary suppression cannot cover or makes
    costly; each message says what to do instead."""
    index = {view.name: i for i, view in enumerate(contract.views)}
    return [
        (f"views[{index[link.second]}]", link.warning)
        for link in links(contract)
        if link.warning is not None
    ]


# --- one pair -------------------------------------------------------------------------------


def _link(first: View, second: View) -> Link | None:
    if first.stream != second.stream or not _same_filter(first, second):
        return None
    shared = _shared_measures(first, second)
    if not shared:
        return None
    relation = _relation(first, second)
    if first.noise is not None or second.noise is not None:
        relation += (
            "; one of them is noised, so a difference gives only a noisy value and no"
            " secondary suppression is applied"
        )
        return Link(first.name, second.name, shared, relation, protected=False)
    if first.window != second.window:
        different = (
            f"views {first.name} and {second.name} publish related totals over windows of"
            " different lengths: secondary suppression cannot protect their suppressed groups"
            " (a long window adds up short ones); publish both over the same window, add"
            " noise to one of them, or drop one"
        )
        return Link(first.name, second.name, shared, relation, protected=False, warning=different)
    warning = None
    if first.k != second.k:
        warning = (
            f"views {first.name} and {second.name} are linked but have different k: every"
            f" group the larger k suppresses is also withheld where it can be derived, so the"
            " view with the smaller k loses groups; give both the same k, add noise to one of"
            " them, or drop one"
        )
    return Link(first.name, second.name, shared, relation, protected=True, warning=warning)


def _same_filter(first: View, second: View) -> bool:
    a, b = first.filter, second.filter
    if a is None or b is None:
        return a is None and b is None
    return a.field == b.field and set(map(repr, a.values)) == set(map(repr, b.values))


def _additive(view: View) -> dict[tuple[str, str | None], str]:
    out: dict[tuple[str, str | None], str] = {}
    for measure in view.measures:
        if measure.type in ADDITIVE:
            field = getattr(measure, "field", None)
            words = {
                "count": "number of records",
                "distinct_subjects": "distinct subjects",
                "sum": f"sum of {field}",
                "distinct": f"distinct {field}",
            }[measure.type]
            out[(measure.type, field)] = words
    return out


def _shared_measures(first: View, second: View) -> tuple[str, ...]:
    mine, theirs = _additive(first), _additive(second)
    return tuple(words for key, words in mine.items() if key in theirs)


def _relation(first: View, second: View) -> str:
    """Which totals of ``first`` and ``second`` are equal, in words."""
    common: list[str] = []
    apart: list[str] = []
    matched: set[int] = set()
    for a in first.group_by:
        partner = next(
            (
                (j, b)
                for j, b in enumerate(second.group_by)
                if j not in matched and _reads(a) == _reads(b)
            ),
            None,
        )
        if partner is None:
            apart.append(f"{first.name} also groups by {a.name}")
            continue
        matched.add(partner[0])
        nesting = _nesting(a, partner[1])
        if nesting is None:
            apart.append(
                f"{a.name} and {partner[1].name} cross ({_kind(a)} vs {_kind(partner[1])})"
            )
        else:
            common.append(nesting)
    apart += [
        f"{second.name} also groups by {b.name}"
        for j, b in enumerate(second.group_by)
        if j not in matched
    ]
    scope = f"per {', '.join(common)}" if common else "over the whole window"
    return "; ".join([f"their totals are equal {scope}", *apart])


def _reads(dim: Dimension) -> tuple[str, ...]:
    if isinstance(dim, FieldDimension | RoundDimension):
        return (dim.field,)
    return (dim.lat, dim.lon)


def _kind(dim: Dimension) -> str:
    if isinstance(dim, H3Dimension):
        return f"H3 resolution {dim.resolution}"
    if isinstance(dim, GridDimension):
        return f"{dim.size_m:g} m grid"
    if isinstance(dim, ZonesDimension):
        return f"zones of {dim.file}"
    if isinstance(dim, RoundDimension):
        return f"{dim.field} to {dim.decimals} decimal(s)"
    return f"value of {dim.field}"


def _nesting(a: Dimension, b: Dimension) -> str | None:
    """How two dimensions over the same fields relate, in words; None when they cross."""
    if _params(a) == _params(b):
        return f"same {a.name}" if a.name == b.name else f"{a.name} = {b.name}"
    if isinstance(a, H3Dimension) and isinstance(b, H3Dimension):
        coarse, fine = (a, b) if a.resolution < b.resolution else (b, a)
        return (
            f"{coarse.name} (H3 cells at resolution {fine.resolution} nest approximately in"
            f" their parent at {coarse.resolution})"
        )
    if isinstance(a, ZonesDimension) and isinstance(b, ZonesDimension):
        if _zones_inside(a, b):
            return f"{b.name} (every zone of {a.name} lies inside one of {b.name})"
        if _zones_inside(b, a):
            return f"{a.name} (every zone of {b.name} lies inside one of {a.name})"
    return None


def _params(dim: Dimension) -> tuple[Any, ...]:
    if isinstance(dim, H3Dimension):
        return ("h3", dim.resolution)
    if isinstance(dim, GridDimension):
        return ("grid", dim.size_m)
    if isinstance(dim, ZonesDimension):
        return ("zones", tuple((z.value, z.polygons) for z in dim.zones))
    if isinstance(dim, RoundDimension):
        return ("round", dim.decimals)
    return ("field",)


def _zones_inside(inner: ZonesDimension, outer: ZonesDimension) -> bool:
    """Every inner zone has all its vertices in one outer zone (enough for an explanation)."""
    for zone in inner.zones:
        points = [p for polygon in zone.polygons for ring in polygon for p in ring]
        if not any(all(o.contains(lon, lat) for lon, lat in points) for o in outer.zones):
            return False
    return True
