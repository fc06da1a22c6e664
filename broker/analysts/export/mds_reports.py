"""MDS Reports (MDS 2.0.2, ``data-types.md#reports``): the monthly trip-count CSV a provider
serves on ``/reports``, built from a trips view's published windows.

One row per month × geography × vehicle type, ``special_group_type`` ``all_riders``. A count
that is fewer than 10, zero, or unknown (a window of the month suppressed a group that may
belong to the row: ``periods.py``) is ``-1``, the spec's redaction value. ``rider_count`` is
empty: no view counts riders (the subject of a trips stream is the vehicle).
"""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

from broker.analysts.export.periods import Period, aggregate, local_date, require_months
from broker.analysts.export.regulatory import (
    RegulatoryOptions,
    area_dimension,
    exact_view,
    quiet_before,
    quiet_since,
    refuse,
    window_ms,
    write_meta,
    write_rows,
    zone,
)
from broker.analysts.export.table import Column, ExportError
from broker.kafka.public_reader import ViewContents
from connectors.mds import VEHICLE_TYPES  # MDS 2.0 data-types.md, "Vehicle Types"
from contracts.model import CountMeasure, FieldDimension

FORMAT = "mds-reports"
SPEC = "MDS 2.0.2, data-types.md#reports (Provider API /reports, monthly CSV)"
COLUMNS = (
    "provider_id",
    "start_date",
    "duration",
    "special_group_type",
    "geography_id",
    "vehicle_type",
    "trip_count",
    "rider_count",
)
REDACTED = -1
"""The spec's value for a count below ``K`` (zero included)."""
K = 10
"""The spec's k-anonymity threshold: fewer than 10 trips in a count are reported as -1."""
DURATION = "P1M"
ALL_RIDERS = "all_riders"
TRIP_FIELDS = ("trip_id", "start_time")
"""A stream whose schema has these fields carries trips (MDS trips)."""


MISSING = (
    "Rows cover every geography with a published group in an exported period; a geography that "
    "never had one has no row: unknown, not zero."
)


def _check(contents: ViewContents, options: RegulatoryOptions) -> tuple[str, str, str | None]:
    """The count measure, area dimension and vehicle-type dimension of a view MDS Reports
    fits; a specific ``ExportError`` otherwise."""
    view, contract = contents.view, contents.contract
    exact_view(FORMAT, contents)
    stream = contract.stream(view.stream)
    if not all(f in stream.fields for f in TRIP_FIELDS):
        reason = (
            f"MDS Reports count trips, and its stream {stream.name!r} is not a trips stream "
            f"(no {' and '.join(TRIP_FIELDS)} fields)"
        )
        raise refuse(FORMAT, contents, reason)
    count = next((m.name for m in view.measures if isinstance(m, CountMeasure)), None)
    if count is None:
        raise refuse(FORMAT, contents, "the view has no count measure (trip_count)")
    area = area_dimension(FORMAT, contents, options.geography)
    vehicle = next(
        (
            d.name
            for d in view.group_by
            if isinstance(d, FieldDimension) and d.name == "vehicle_type"
        ),
        None,
    )
    if vehicle is None and options.vehicle_type is None:
        reason = (
            "the view has no vehicle_type dimension: pass --vehicle-type (one of "
            f"{', '.join(sorted(VEHICLE_TYPES))}) when the contract covers one vehicle type"
        )
        raise refuse(FORMAT, contents, reason)
    if options.vehicle_type is not None and options.vehicle_type not in VEHICLE_TYPES:
        known = ", ".join(sorted(VEHICLE_TYPES))
        msg = f"--vehicle-type must be an MDS 2.0 vehicle type: one of {known}"
        raise ExportError(msg)
    if options.provider_id is not None:
        _check_uuid(options.provider_id)
    return count, area, vehicle


def _check_uuid(text: str) -> None:
    try:
        uuid.UUID(text)
    except ValueError as exc:
        msg = "--provider-id must be the provider's MDS UUID (providers.csv)"
        raise ExportError(msg) from exc


def trip_count(value: dict[str, float] | None, count: str) -> int:
    """The published trip count of a cell: -1 when unknown or fewer than ``K``."""
    if value is None or value[count] < K:
        return REDACTED
    return int(value[count])


def write_mds_reports(
    contents: ViewContents, out: Path, meta: dict[str, Any], options: RegulatoryOptions
) -> list[Path]:
    """The MDS Reports CSV of ``contents`` (complete months only) and ``FILE.meta.json``."""
    count, area, vehicle = _check(contents, options)
    tz = zone(options.timezone)
    step = window_ms(contents.view)
    starts = [r.window_start for r in contents.reports]
    periods = require_months(starts, step, tz)
    key_of = {"geography_id": area} | ({"vehicle_type": vehicle} if vehicle else {})
    fixed = () if vehicle else (str(options.vehicle_type),)
    result = aggregate(
        contents.groups,
        contents.reports,
        periods=periods,
        window_ms=step,
        key_of=key_of,
        fixed=fixed,
        summed=[count],
        exhaustive={d.name for d in contents.view.group_by} == set(key_of.values()),
        quiet_before=quiet_before(contents, meta),
        quiet_since=quiet_since(contents),
    )
    # MDS allows only its vehicle types; a view's vehicle_type dimension holds what providers
    # sent (a hostile one may send anything): such rows are left out and counted.
    keys = [key for key in result.keys if key[1] in VEHICLE_TYPES]
    rows = [
        (
            options.provider_id,
            local_date(p.start_ms, tz).isoformat(),
            DURATION,
            ALL_RIDERS,
            geography,
            vehicle_type,
            trip_count(result.cells[(p, (geography, vehicle_type))], count),
            None,
        )
        for p in result.periods
        for geography, vehicle_type in keys
    ]
    write_rows(out, COLUMNS, rows)
    meta = {
        **meta,
        "format": FORMAT,
        "spec": SPEC,
        "timezone": tz.key,
        "missing_groups": MISSING,
        "rows": len(rows),
        "months": [local_date(p.start_ms, tz).isoformat() for p in result.periods],
        "months_left_out": [_month(p, tz) for p in result.incomplete],
        "pairs_left_out_unknown_vehicle_type": len(result.keys) - len(keys),
        "mapping": {
            "trip_count": f"sum of '{count}' over the month's windows",
            "geography_id": f"the view's '{area}' dimension",
            "vehicle_type": f"the view's '{vehicle}' dimension"
            if vehicle
            else "stated by the analyst (--vehicle-type)",
            "rider_count": "empty: no view of the contract counts riders",
            "provider_id": "stated by the analyst (--provider-id)"
            if options.provider_id
            else "empty: no --provider-id given",
        },
    }
    return [out, write_meta(out, meta, _columns(contents, area))]


def _month(period: Period, tz: Any) -> str:
    return local_date(period.start_ms, tz).isoformat()[:7]


def _columns(contents: ViewContents, area: str) -> list[Column]:
    event_time = contents.contract.stream(contents.view.stream).event_time
    return [
        Column("provider_id", "string", "the provider's MDS UUID (--provider-id), else empty"),
        Column(
            "start_date",
            "date",
            f"first day of the month (local time); a trip counts in the month of its "
            f"'{event_time}'",
        ),
        Column("duration", "string", "always P1M"),
        Column("special_group_type", "string", "always all_riders (no special groups)"),
        Column("geography_id", "string", f"the view's '{area}' value (area of the trip)"),
        Column("vehicle_type", "string", "MDS vehicle type"),
        Column(
            "trip_count",
            "integer",
            f"trips in the month; -1 when fewer than {K}, zero, or unknown because a window "
            "of the month suppressed a group that may belong to this row",
        ),
        Column("rider_count", "integer", "empty: riders are not counted by any view"),
    ]
