"""k-anonymity threshold: groups with fewer than k distinct subjects are withheld.

Without noise, suppression decides on the true distinct-subject count. With noise, the caller
passes the release decision of ``policies.noise.released`` (at least k subjects *and* a noisy
subject count at ``k + margin``), so that whether a group is published is itself DP. Only one
tumbling window grid per view is ever released, so a suppressed group cannot be recovered by
subtracting two published numbers of one view (no overlapping windows, no nested grids, no
ad-hoc queries). Views linked to others (same events, numbers that add up) also withhold the
groups that ``policies.secondary`` chooses (``secondary``), counted apart in the report. The
report is published with the window, MDS-style.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from policies.base import MeasureValue, SuppressionReport

BUDGET_EXHAUSTED = "budget_exhausted"


@dataclass(frozen=True, slots=True)
class GroupTotals:
    """A finalised group before suppression (internal: carries true subject counts)."""

    group: Mapping[str, Any]
    events: int
    subjects: int
    measures: Mapping[str, MeasureValue]


def suppress(
    groups: Iterable[GroupTotals],
    k: int,
    keep: Callable[[GroupTotals], bool] | None = None,
    secondary: Callable[[GroupTotals], bool] | None = None,
) -> tuple[list[GroupTotals], SuppressionReport]:
    """Keep groups with at least ``k`` distinct subjects (or those ``keep`` accepts) unless
    ``secondary`` withholds them too; report what was withheld, and why."""
    kept: list[GroupTotals] = []
    dropped_groups = dropped_events = kept_events = second = 0
    for totals in groups:
        passes = totals.subjects >= k if keep is None else keep(totals)
        if passes and secondary is not None and secondary(totals):
            passes = False
            second += 1
        if passes:
            kept.append(totals)
            kept_events += totals.events
        else:
            dropped_groups += 1
            dropped_events += totals.events
    report = SuppressionReport(
        k=k,
        groups_published=len(kept),
        groups_suppressed=dropped_groups,
        events_published=kept_events,
        events_suppressed=dropped_events,
        groups_secondary=second,
    )
    return kept, report


def withhold(groups: Iterable[GroupTotals], k: int, reason: str) -> SuppressionReport:
    """Report for a window withheld as a whole (e.g. ε budget exhausted)."""
    listed = list(groups)
    return SuppressionReport(
        k=k,
        groups_published=0,
        groups_suppressed=len(listed),
        events_published=0,
        events_suppressed=sum(g.events for g in listed),
        withheld_reason=reason,
    )
