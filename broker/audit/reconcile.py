"""Reconciliation: every event in is accounted for, and the worker's own books agree.

Per stream: ``in = raw events + DLQ records``; rejected by reason from the DLQ headers.
Per view, from the auditor's replay (``broker.audit.replay``) and the public topic:
``raw events = published + suppressed + late + filtered + outside + duplicate + bounded + open``,
where an
event is
*published* when its (window, group) was published, *suppressed* when its window was released
(a report exists) without its group, *open* when its window is not released yet.

The worker's own books are then compared with that, and every difference is a gap:

* ``accounting|<view>|<window_start>`` on ``respublica.<c>.state`` (events published and
  suppressed per released window, committed in the release's transaction);
* the cumulative dispositions in each source's last checkpoint on the partials topic
  (compared when the period is the whole history and no raw record was deleted yet).

Which windows must have a report is computed here too, from the raw topic alone
(``due_windows``): every window with events, and the windows without any that follow one
(docs/architecture.md, "Empty windows"). A due window left out while a later one is released
is a violation (``window-skipped``), and so is a report of a window that has no event and is
not due (``report-not-due``, checked when the raw topic is complete).
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from broker.audit.model import Findings, Period
from broker.audit.read import TopicRead
from broker.audit.replay import GroupText, StreamTally, ViewTally, group_text
from broker.kafka.internal import ACCOUNTING_PREFIX, CHECKPOINT_PREFIX, Checkpoint
from broker.kafka.public_reader import PublishedGroup, RowDecoder, WindowReport
from broker.kafka.serde import SerializationError
from contracts.model import Contract, View
from policies.base import EMPTY_WINDOWS_AFTER_DATA

SECTION = "reconciliation"
DISPOSITIONS = ("late", "filtered", "outside", "duplicate", "bounded")
H_REASON = "respublica.reason"
H_REJECTED_AT = "respublica.rejected_at"


@dataclass
class Published:
    """A view's public topic, decoded: groups and reports by window start (last copy wins)."""

    groups: dict[int, dict[GroupText, PublishedGroup]] = field(default_factory=dict)
    reports: dict[int, WindowReport] = field(default_factory=dict)


def published_rows(contract: Contract, view: View, public: TopicRead) -> Published:
    """The decodable rows of ``public.<c>.<v>``, deduplicated by record key."""
    decoder = RowDecoder(contract, view)
    latest: dict[bytes, PublishedGroup | WindowReport] = {}
    for record in public.all():
        if record.key is None or record.value is None:
            continue
        try:
            latest[record.key] = decoder.decode(record)
        except SerializationError:
            continue  # the terms section reports it
    out = Published()
    for row in latest.values():
        if isinstance(row, WindowReport):
            out.reports[row.window_start] = row
        else:
            key = group_text(row.group.get(d.name) for d in view.group_by)
            out.groups.setdefault(row.window_start, {})[key] = row
    return out


def accounting_records(state: TopicRead, view: str) -> dict[int, dict[str, Any]]:
    """The merger's per-window accounting of one view (last record per key)."""
    prefix = ACCOUNTING_PREFIX + f"{view}|".encode()
    found: dict[int, dict[str, Any]] = {}
    for record in state.all():
        if record.key is not None and record.key.startswith(prefix) and record.value:
            data = json.loads(record.value)
            found[int(data["window_start"])] = data
    return found


def checkpoints(partials: TopicRead, view: str) -> dict[str, Checkpoint]:
    """The last checkpoint of every source of one view."""
    found: dict[str, Checkpoint] = {}
    for record in partials.all():
        if record.key is not None and record.key.startswith(CHECKPOINT_PREFIX) and record.value:
            point = Checkpoint.from_value(view, record.value)
            found[point.source] = point
    return found


def dlq_summary(dlq: TopicRead, period: Period, findings: Findings) -> dict[str, Any]:
    """Records on ``dlq.<c>.<s>`` in the period (by rejection time), by reason code."""
    reasons: Counter[str] = Counter()
    for record in dlq.all():
        headers = dict(record.headers or [])
        at = headers.get(H_REJECTED_AT)
        when = int(at) if at and at.isdigit() else int(record.timestamp)
        if not period.contains(when):
            continue
        reason = headers.get(H_REASON)
        if not reason:
            findings.violation(
                SECTION,
                "dlq-without-reason",
                "a rejected record carries no reason code",
                f"{record.topic}/{record.partition}@{record.offset}",
            )
        reasons[reason.decode("utf-8", "replace") if reason else "(none)"] += 1
    return {"records": sum(reasons.values()), "by_reason": dict(sorted(reasons.items()))}


def due_windows(starts: Iterable[int], width: int, delay: int, passed: int) -> set[int]:
    """Window starts a view must report: each window with events, and after it the windows
    without any, up to ``EMPTY_WINDOWS_AFTER_DATA`` of them: before the next window with
    events, or (after the last) those that end by ``passed − delay``, how far time has passed."""
    data = sorted(set(starts))
    due = set(data)
    closed = (passed - delay - width) // width * width  # the last window ended by then
    for i, start in enumerate(data):
        last = data[i + 1] - width if i + 1 < len(data) else closed
        last = min(last, start + EMPTY_WINDOWS_AFTER_DATA * width)
        due.update(range(start + width, last + 1, width))
    return due


class ViewReconciliation:
    """Reconciles one view; ``result()`` is its section of the report."""

    def __init__(
        self,
        view: View,
        tally: ViewTally,
        published: Published,
        accounting: Mapping[int, dict[str, Any]],
        points: Mapping[str, Checkpoint],
        findings: Findings,
        partitions: Sequence[int],
    ) -> None:
        self.view = view
        self.tally = tally
        self.published = published
        self.accounting = accounting
        self.points = points
        self.findings = findings
        self.k = view.k
        spec = tally.spec
        self.data = {start for start, _ in tally.cells}
        self.due = due_windows(
            self.data, spec.window_ms, spec.delay_ms, tally.time_passed(partitions)
        )

    def released(self, start: int) -> bool:
        """The window was released: a public report, or accounted as withheld."""
        booked = self.accounting.get(start)
        return start in self.published.reports or (
            booked is not None and not booked.get("published", True)
        )

    def withheld(self, start: int) -> bool:
        """The whole window was withheld (ε budget, contract inactive)."""
        report = self.published.reports.get(start)
        booked = self.accounting.get(start)
        return (report is not None and report.withheld_reason is not None) or (
            booked is not None and not booked.get("published", True)
        )

    def split(self) -> dict[str, int]:
        """Folded events in the period: published, suppressed, open."""
        out = {"published": 0, "suppressed": 0, "open": 0}
        for (start, group), n in self.tally.folded_in_period.items():
            if not self.released(start):
                out["open"] += n
            elif group in self.published.groups.get(start, {}):
                out["published"] += n
            else:
                out["suppressed"] += n
        return out

    def windows(self, period: Period) -> list[int]:
        """Window starts in the period that anyone knows of (raw, public, accounting)."""
        starts = (
            self.data
            | self.due
            | set(self.published.reports)
            | set(self.published.groups)
            | set(self.accounting)
        )
        return sorted(s for s in starts if period.contains(s))

    def check_windows(self, period: Period, verifiable_from: int | None) -> dict[str, int]:
        """Per released window: groups vs raw events, reports and the worker's accounting."""
        cells: dict[int, dict[GroupText, Any]] = {}
        for (start, group), cell in self.tally.cells.items():
            cells.setdefault(start, {})[group] = cell
        stats = Counter[str]()
        released = [s for s in (*self.published.reports, *self.accounting) if self.released(s)]
        latest = max(released, default=None)
        for start in self.windows(period):
            if verifiable_from is not None and start < verifiable_from:
                stats["not_verifiable"] += 1
                continue
            if not self.released(start):
                empty = start in self.due and start not in self.data
                stats["empty_open" if empty else "open"] += 1
                if start in self.due and latest is not None and start < latest:
                    self.findings.violation(
                        SECTION,
                        "window-skipped",
                        (
                            f"view {self.view.name}: window {start} is due a report (a later "
                            "window is released) but has none"
                        ),
                    )
                if self.accounting.get(start, {}).get("published"):
                    self.findings.violation(
                        SECTION,
                        "report-missing",
                        (
                            f"view {self.view.name}: window {start} is accounted as released but "
                            "has no report on the public topic"
                        ),
                    )
                continue
            stats["released"] += 1
            if start not in self.data:
                stats["empty"] += 1
                if start not in self.due and verifiable_from is None:
                    self.findings.violation(
                        SECTION,
                        "report-not-due",
                        (
                            f"view {self.view.name}: window {start} is reported, but it has no "
                            f"event and no window with events in the {EMPTY_WINDOWS_AFTER_DATA} "
                            "before it"
                        ),
                    )
            stats["withheld"] += self.withheld(start)
            stats["gap"] += self._check_window(start, cells.get(start, {}))
            stats["with_accounting"] += start in self.accounting
        return dict(stats)

    def _check_window(self, start: int, cells: Mapping[GroupText, Any]) -> int:
        name = self.view.name
        published = self.published.groups.get(start, {})
        for group, row in published.items():
            cell = cells.get(group)
            where = f"{row.topic}/{row.partition}@{row.offset}"
            if cell is None:
                self.findings.violation(
                    SECTION,
                    "group-without-events",
                    (f"view {name}: window {start} publishes a group no raw event falls in"),
                    where,
                )
            elif len(cell.subjects) < self.k:
                self.findings.violation(
                    SECTION,
                    "below-k",
                    (
                        f"view {name}: window {start} publishes a group of {len(cell.subjects)} "
                        f"distinct subjects, below k={self.k}"
                    ),
                    where,
                )
            elif self.view.noise is None:
                self._check_measures(start, row, cell, where)
        # A noised view's release decision is itself noisy (docs/privacy.md): no such warning.
        secondary = self.tally.secondary.get(start, frozenset())
        over = [
            g
            for g, c in cells.items()
            if self.view.noise is None
            and g not in published
            and len(c.subjects) >= self.k
            and g not in secondary  # withheld to protect a linked view (secondary suppression)
            and not self.withheld(start)
        ]
        if over:
            self.findings.warning(
                SECTION,
                "over-suppressed",
                (
                    f"view {name}: window {start} withholds {len(over)} group(s) that have at "
                    f"least k={self.k} distinct subjects in the raw events"
                ),
            )
        self._check_report(start, cells, published)
        return self._check_accounting(start, cells, published)

    def _check_measures(self, start: int, row: PublishedGroup, cell: Any, where: str) -> None:
        expected: dict[str, int] = {}
        for m in self.view.measures:
            if m.type == "count":
                expected[m.name] = cell.events
            elif m.type == "distinct_subjects":
                expected[m.name] = len(cell.subjects)
            elif m.type == "distinct":
                expected[m.name] = len(cell.distinct.get(m.field, ()))
        wrong = sorted(n for n, v in expected.items() if row.measures.get(n) != v)
        if wrong:
            self.findings.violation(
                SECTION,
                "measure-mismatch",
                (
                    f"view {self.view.name}: window {start} publishes {', '.join(wrong)} different "
                    "from what its raw events give"
                ),
                where,
            )

    def _check_report(
        self,
        start: int,
        cells: Mapping[GroupText, Any],
        published: Mapping[GroupText, PublishedGroup],
    ) -> None:
        report = self.published.reports.get(start)
        if report is None:
            return
        stated: tuple[int, ...] = (report.groups_published,)
        found: tuple[int, ...] = (len(published),)
        what = "published groups"
        if report.groups_suppressed is not None:  # a noised view publishes no suppressed count,
            stated += (report.groups_suppressed,)  # and the (public) audit gives none either
            found += (sum(1 for g in cells if g not in published),)
            what = "published / suppressed groups"
        if report.groups_secondary is not None and report.withheld_reason is None:
            secondary = self.tally.secondary.get(start, frozenset())
            stated += (report.groups_secondary,)
            found += (sum(1 for g in cells if g not in published and g in secondary),)
            what += " / of them withheld for linked views"
        if stated != found:
            self.findings.violation(
                SECTION,
                "report-mismatch",
                (
                    f"view {self.view.name}: window {start} reports {stated} {what}; the public "
                    f"topic and raw events give {found}"
                ),
                f"{report.topic}/{report.partition}@{report.offset}",
            )

    def _check_accounting(
        self,
        start: int,
        cells: Mapping[GroupText, Any],
        published: Mapping[GroupText, PublishedGroup],
    ) -> int:
        booked = self.accounting.get(start)
        if booked is None:
            self.findings.warning(
                SECTION,
                "no-accounting",
                (
                    f"view {self.view.name}: window {start} has no accounting record (released "
                    "by a worker that did not write one)"
                ),
            )
            return 0
        out = sum(c.events for g, c in cells.items() if g in published)
        held = sum(c.events for g, c in cells.items() if g not in published)
        gap = abs(int(booked["events_published"]) - out) + abs(
            int(booked["events_suppressed"]) - held
        )
        if gap:
            self.findings.violation(
                SECTION,
                "accounting-gap",
                (
                    f"view {self.view.name}: window {start}: the worker accounted "
                    f"{booked['events_published']} published + {booked['events_suppressed']} "
                    f"suppressed events, the raw topic gives {out} + {held} (gap {gap})"
                ),
            )
        return gap

    def check_checkpoints(self, sources: list[str]) -> tuple[dict[str, int], int]:
        """The worker's cumulative dispositions (last checkpoints) vs the replay, and the gap."""
        worker: Counter[str] = Counter()
        auditor: Counter[str] = Counter()
        for source in sources:
            point = self.points.get(source)
            if point is None:
                continue
            worker.update({k: v for k, v in point.counts.items() if v})
            auditor.update(self.tally.up_to_checkpoint.get(source, Counter()))
        gap = sum(abs(worker[d] - auditor[d]) for d in ("folded", *DISPOSITIONS))
        if gap:
            detail = ", ".join(
                f"{d} {worker[d]} vs {auditor[d]}"
                for d in ("folded", *DISPOSITIONS)
                if worker[d] != auditor[d]
            )
            self.findings.violation(
                SECTION,
                "checkpoint-gap",
                (
                    f"view {self.view.name}: the worker's checkpoints and the raw topic disagree "
                    f"({detail}; gap {gap})"
                ),
            )
        return {d: worker[d] for d in ("folded", *DISPOSITIONS)}, gap


def reconcile_view(
    view: View,
    stream: StreamTally,
    recon: ViewReconciliation,
    period: Period,
    *,
    raw_complete: bool,
    sources: list[str],
) -> dict[str, Any]:
    """The view's line of the reconciliation table, with the gap and where it comes from."""
    tally = recon.tally
    split = recon.split()
    row: dict[str, Any] = {
        "view": view.name,
        "stream": view.stream,
        "events_in": stream.raw_events,
        **split,
    }
    row.update({d: tally.in_period[d] for d in DISPOSITIONS})
    accounted = sum(split.values()) + sum(tally.in_period[d] for d in DISPOSITIONS)
    verifiable_from = None if raw_complete else stream.min_event_time
    windows = recon.check_windows(period, verifiable_from)
    checked = period.unbounded and raw_complete
    worker_counts, point_gap = recon.check_checkpoints(sources) if checked else ({}, 0)
    detail = {
        "unaccounted": stream.raw_events - accounted,
        "undecodable": stream.undecodable,
        "worker_accounting": windows.pop("gap", 0),
        "worker_checkpoints": point_gap,
    }
    row["gap"] = sum(abs(v) for v in detail.values())
    row["gap_detail"] = detail
    row["windows"] = {
        k: windows.get(k, 0)
        for k in ("released", "withheld", "open", "with_accounting", "not_verifiable")
    }
    # Confidential (for a noised view the public topic does not tell an empty window from one
    # whose groups were all withheld): windows without any event, released and due.
    row["empty_windows"] = {
        "released": windows.get("empty", 0),
        "open": windows.get("empty_open", 0),
    }
    row["worker_checkpoint_counts"] = worker_counts if checked else None
    if row["gap"]:
        recon.findings.violation(
            SECTION,
            "gap",
            (
                f"view {view.name}: {row['gap']} event(s) not reconciled "
                f"({', '.join(f'{k} {v}' for k, v in detail.items() if v)})"
            ),
        )
    if split["open"]:
        recon.findings.warning(
            SECTION,
            "open-windows",
            (
                f"view {view.name}: {split['open']} event(s) in {windows.get('open', 0)} "
                "window(s) not released yet"
            ),
        )
    return row
