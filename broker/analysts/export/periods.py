"""Calendar periods from a view's windows: the aggregation the regulatory formats share.

Pure: published groups and suppression reports in, one cell per (period, key) out; no Kafka,
no clock. The rules (docs/analysts.md, "Periods from windows"):

* a period is **complete** when every window starting in it has a suppression report; only
  complete periods are exported, the others are counted as left out;
* a window is **opaque** when it suppressed or withheld anything (``groups_suppressed`` not 0,
  unknown, or a ``withheld_reason``): an absent group there may be a suppressed one;
* a cell is **known** when, in every window of its period, the window is not opaque, or the
  view groups by exactly the key's dimensions and the cell's group is published in it (its
  number is then exact for that window). Otherwise it is unknown (``None``): summing only the
  published windows would under-report, and an analyst could not tell;
* only summable measures are summed (counts of events, sums): distinct subjects of several
  windows do not add up, so no caller may ask for them.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

from broker.analysts.export.table import ExportError
from broker.kafka.public_reader import PublishedGroup, WindowReport
from contracts.durations import format_duration

Key = tuple[str, ...]


@dataclass(frozen=True, order=True)
class Period:
    """A calendar month (or one window) in ms since the epoch, end exclusive."""

    start_ms: int
    end_ms: int


@dataclass
class Aggregate:
    """The cells of every complete period; ``None`` for a cell that is unknown."""

    periods: list[Period]
    incomplete: list[Period]
    keys: list[Key]
    cells: dict[tuple[Period, Key], dict[str, float] | None] = field(default_factory=dict)


def _local(ms: int, zone: ZoneInfo) -> datetime:
    return datetime.fromtimestamp(ms / 1000, tz=UTC).astimezone(zone)


def _month_start(year: int, month: int, zone: ZoneInfo) -> int:
    return int(datetime(year, month, 1, tzinfo=zone).timestamp() * 1000)


def local_date(ms: int, zone: ZoneInfo) -> date:
    """The calendar date of an instant in ``zone``."""
    return _local(ms, zone).date()


def months_tile(first_ms: int, last_ms: int, window_ms: int, zone: ZoneInfo) -> bool:
    """True when every month boundary from ``first_ms`` to ``last_ms`` is a window boundary
    (windows are aligned on the Unix epoch), so each window falls in exactly one month."""
    months = month_periods(first_ms, last_ms, zone)
    return all(p.start_ms % window_ms == 0 and p.end_ms % window_ms == 0 for p in months)


def month_periods(first_ms: int, last_ms: int, zone: ZoneInfo) -> list[Period]:
    """The calendar months (in ``zone``) from the one holding ``first_ms`` to the one holding
    ``last_ms``."""
    moment = _local(first_ms, zone)
    year, month = moment.year, moment.month
    out: list[Period] = []
    while True:
        start = _month_start(year, month, zone)
        if start > last_ms:
            return out
        year, month = (year + 1, 1) if month == 12 else (year, month + 1)
        out.append(Period(start, _month_start(year, month, zone)))


def monthly_or_windows(
    window_starts: Sequence[int], window_ms: int, zone: ZoneInfo
) -> tuple[list[Period], bool]:
    """Calendar months when the view's windows tile them, else one period per window; the
    flag says which (True: months)."""
    if not window_starts:
        return [], True
    first, last = min(window_starts), max(window_starts)
    if months_tile(first, last, window_ms, zone):
        return month_periods(first, last, zone), True
    return [Period(s, s + window_ms) for s in sorted(set(window_starts))], False


def require_months(window_starts: Sequence[int], window_ms: int, zone: ZoneInfo) -> list[Period]:
    """The calendar months of the windows; an ``ExportError`` when windows straddle them."""
    periods, monthly = monthly_or_windows(window_starts, window_ms, zone)
    if not monthly:
        msg = (
            f"the view's {format_duration(timedelta(milliseconds=window_ms))} windows do not "
            f"tile calendar months in "
            f"{zone.key}: a window would straddle two months (monthly reports need windows "
            "of a day or a divisor of it)"
        )
        raise ExportError(msg)
    return periods


def _quiet(start: int, window_ms: int) -> WindowReport:
    """A window before the view's first event: nothing happened, nothing was suppressed."""
    return WindowReport(start, start + window_ms, 0, 0, 0, None, 0.0, {})


def _opaque(report: WindowReport) -> bool:
    return bool(report.groups_suppressed != 0 or report.withheld_reason is not None)


def aggregate(
    groups: Iterable[PublishedGroup],
    reports: Iterable[WindowReport],
    *,
    periods: Sequence[Period],
    window_ms: int,
    key_of: dict[str, str],
    fixed: Key = (),
    summed: Sequence[str],
    exhaustive: bool,
    quiet_before: int | None = None,
    quiet_since: int | None = None,
) -> Aggregate:
    """Sum ``summed`` measures of ``groups`` per period and key (the ``key_of`` dimensions,
    then the ``fixed`` values), under the module's rules. ``exhaustive``: the view groups by
    exactly the ``key_of`` dimensions, nothing is summed over another dimension.
    ``quiet_before``: the view's first released window; the worker releases nothing before a
    view's first event, so windows before it count as released and empty; ``quiet_since``:
    but none that starts before it (the contract's validity: before it nothing was covered,
    so a month that starts earlier is not whole)."""
    by_start = {r.window_start: r for r in reports}
    if quiet_before is not None:
        for period in periods:
            for start in range(period.start_ms, min(period.end_ms, quiet_before), window_ms):
                if quiet_since is None or start >= quiet_since:
                    by_start.setdefault(start, _quiet(start, window_ms))
    rows: dict[int, dict[Key, list[PublishedGroup]]] = {}
    keys: set[Key] = set()
    for g in groups:
        values = tuple(g.group.get(d) for d in key_of.values())
        if any(v is None for v in values):
            continue  # outside every area: not a row of any area
        key = tuple(str(v) for v in values) + fixed
        rows.setdefault(g.window_start, {}).setdefault(key, []).append(g)
        keys.add(key)
    result = Aggregate([], [], sorted(keys))
    for period in periods:
        starts = range(period.start_ms, period.end_ms, window_ms)
        if any(s not in by_start for s in starts):
            result.incomplete.append(period)
            continue
        result.periods.append(period)
        for key in result.keys:
            result.cells[(period, key)] = _cell(
                [(by_start[s], rows.get(s, {}).get(key, [])) for s in starts],
                summed,
                exhaustive=exhaustive,
            )
    return result


def _cell(
    windows: Sequence[tuple[WindowReport, list[PublishedGroup]]],
    summed: Sequence[str],
    *,
    exhaustive: bool,
) -> dict[str, float] | None:
    """The sums over a period's windows, or None when one window may hide part of them."""
    total = dict.fromkeys(summed, 0.0)
    for report, found in windows:
        if _opaque(report) and not (exhaustive and found):
            return None  # a suppressed group of this window may belong to the cell
        for group in found:  # none: a clear window without the group, nothing happened
            for name in summed:
                value = group.measures.get(name)
                if value is None:
                    return None
                total[name] += value
    return total
