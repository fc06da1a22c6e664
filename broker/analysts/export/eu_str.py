"""Short-term-rental activity, aggregated (Regulation (EU) 2024/1028): nights and guests per
area and period, from a view that sums both.

The Regulation has platforms transmit activity data per unit (nights rented, guests, with the
registration number) to the competent authority, and aggregated data for statistics. Our
contracts publish k-anonymous aggregates only, so this is the aggregated form, never per-unit
data. A period is a calendar month when the view's windows tile months, else the view's own
window (the Paris example's P30D). A value that may be incomplete (a window of the period
suppressed a group that may belong to the row) is left empty, flagged ``C`` (confidential) in
``conf_status`` after the SDMX confidentiality-status code list (``F`` free, ``C``
confidential).
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from broker.analysts.export.periods import Period, aggregate, monthly_or_windows
from broker.analysts.export.regulatory import (
    RegulatoryOptions,
    area_dimension,
    exact_view,
    integral,
    quiet_before,
    quiet_since,
    refuse,
    window_ms,
    write_meta,
    write_rows,
    zone,
)
from broker.analysts.export.table import Column
from broker.kafka.public_reader import ViewContents
from contracts.durations import format_duration
from contracts.model import SumMeasure

FORMAT = "eu-str-activity"
SPEC = (
    "Regulation (EU) 2024/1028 (OJ L 29.4.2024): activity data (number of nights rented and "
    "number of guests), aggregated per area and period"
)
COLUMNS = ("period_start", "period_end", "period", "area_id", "nights", "guests", "conf_status")
FREE, CONFIDENTIAL = "F", "C"
MEASURES = ("nights", "guests")
"""The Regulation's activity data: the fields the view must sum."""


MISSING = (
    "Rows cover every area with a published group in an exported period; a area that "
    "never had one has no row: unknown, not zero."
)


def _sums(contents: ViewContents) -> dict[str, str]:
    """Measure name of the view's sum of each activity field; refuses a view without one."""
    view = contents.view
    out: dict[str, str] = {}
    for field in MEASURES:
        name = next(
            (m.name for m in view.measures if isinstance(m, SumMeasure) and m.field == field),
            None,
        )
        if name is None:
            reason = f"the view has no sum of the '{field}' field (the Regulation's {field})"
            raise refuse(FORMAT, contents, reason)
        out[field] = name
    return out


def _when(ms: int, tz: ZoneInfo) -> str:
    return datetime.fromtimestamp(ms / 1000, tz=UTC).astimezone(tz).isoformat(timespec="seconds")


def write_eu_str(
    contents: ViewContents, out: Path, meta: dict[str, Any], options: RegulatoryOptions
) -> list[Path]:
    """The aggregated activity CSV of ``contents`` (complete periods only), ``FILE.meta.json``."""
    exact_view(FORMAT, contents)
    sums = _sums(contents)
    area = area_dimension(FORMAT, contents, options.geography)
    tz = zone(options.timezone)
    step = window_ms(contents.view)
    periods, monthly = monthly_or_windows([r.window_start for r in contents.reports], step, tz)
    result = aggregate(
        contents.groups,
        contents.reports,
        periods=periods,
        window_ms=step,
        key_of={"area_id": area},
        summed=list(sums.values()),
        exhaustive=[d.name for d in contents.view.group_by] == [area],
        quiet_before=quiet_before(contents, meta),
        quiet_since=quiet_since(contents),
    )
    length = "P1M" if monthly else format_duration(contents.view.window)
    rows = [
        _row(p, key[0], result.cells[(p, key)], sums, tz, length)
        for p in result.periods
        for key in result.keys
    ]
    write_rows(out, COLUMNS, rows)
    meta = {
        **meta,
        "format": FORMAT,
        "spec": SPEC,
        "timezone": tz.key,
        "missing_groups": MISSING,
        "period": length,
        "rows": len(rows),
        "periods_left_out": [_when(p.start_ms, tz) for p in result.incomplete],
        "mapping": {
            "nights": f"sum of the view's '{sums['nights']}' over the period's windows",
            "guests": f"sum of the view's '{sums['guests']}' over the period's windows",
            "area_id": f"the view's '{area}' dimension",
        },
    }
    return [out, write_meta(out, meta, _columns(contents, area, length))]


def _row(
    period: Period,
    area: str,
    cell: dict[str, float] | None,
    sums: dict[str, str],
    tz: ZoneInfo,
    length: str,
) -> tuple[Any, ...]:
    start, end = _when(period.start_ms, tz), _when(period.end_ms, tz)
    if cell is None:
        return (start, end, length, area, None, None, CONFIDENTIAL)
    nights, guests = (integral(cell[sums[f]]) for f in MEASURES)
    return (start, end, length, area, nights, guests, FREE)


def _columns(contents: ViewContents, area: str, length: str) -> list[Column]:
    event_time = contents.contract.stream(contents.view.stream).event_time
    return [
        Column("period_start", "timestamp", f"start of the period (inclusive, by '{event_time}')"),
        Column("period_end", "timestamp", "end of the period (exclusive)"),
        Column("period", "string", f"length of the period ({length})"),
        Column("area_id", "string", f"the view's '{area}' value"),
        Column("nights", "number", "nights rented in the area and period; empty when C"),
        Column("guests", "number", "guests in the area and period; empty when C"),
        Column(
            "conf_status",
            "string",
            "F: exact; C: withheld, a window of the period suppressed a group that may "
            f"belong to this area (fewer than k = {contents.view.k} units)",
        ),
    ]
