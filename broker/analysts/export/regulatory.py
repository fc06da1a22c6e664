"""What the regulatory formats (``mds_reports``, ``eu_str``) share: their options, the choice
of the area dimension, the checks that refuse a view they do not fit, the sidecar metadata."""

from __future__ import annotations

import csv
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from broker.analysts.export.csv import neutralise
from broker.analysts.export.table import Column, ExportError, sidecar
from broker.kafka.public_reader import ViewContents
from contracts.model import GridDimension, H3Dimension, View, ZonesDimension

AREA_DIMENSIONS = (H3Dimension, ZonesDimension, GridDimension)


@dataclass(frozen=True)
class RegulatoryOptions:
    """What the analyst states that the view cannot: time zone, area dimension, and for MDS
    the vehicle type and the provider's MDS id."""

    timezone: str = "UTC"
    geography: str | None = None
    vehicle_type: str | None = None
    provider_id: str | None = None


def zone(name: str) -> ZoneInfo:
    """The IANA time zone ``name``; an ``ExportError`` for an unknown one."""
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        msg = f"--timezone: unknown IANA time zone {name!r} (e.g. Europe/Paris, UTC)"
        raise ExportError(msg) from exc


def refuse(fmt: str, contents: ViewContents, reason: str) -> ExportError:
    """The error for a view ``fmt`` does not fit: which view, which format, why."""
    msg = f"{contents.contract.id}/{contents.view.name} cannot be exported as {fmt}: {reason}"
    return ExportError(msg)


def area_dimension(fmt: str, contents: ViewContents, chosen: str | None) -> str:
    """The view's area dimension: ``chosen`` (``--geography``), else its first H3, zones or
    grid dimension."""
    view = contents.view
    areas = [d.name for d in view.group_by if isinstance(d, AREA_DIMENSIONS)]
    if chosen is not None:
        if chosen not in areas:
            listed = ", ".join(areas) or "none"
            reason = f"--geography {chosen!r} is not an area dimension of the view ({listed})"
            raise refuse(fmt, contents, reason)
        return chosen
    if not areas:
        raise refuse(fmt, contents, "the view has no area dimension (h3, zones or grid)")
    return areas[0]


def exact_view(fmt: str, contents: ViewContents) -> None:
    """Refuse a noised view: its numbers are estimates, and a group's absence may be the
    release threshold's, so neither sums nor the redaction rules hold."""
    if contents.view.noise is not None:
        raise refuse(fmt, contents, "its numbers carry differential-privacy noise")


def window_ms(view: View) -> int:
    """The view's window in ms."""
    return int(view.window.total_seconds() * 1000)


def write_rows(path: Path, names: Sequence[str], rows: Iterable[Sequence[Any]]) -> None:
    """A CSV file: UTF-8, header row, CRLF (RFC 4180), None → empty, a text a spreadsheet
    would run as a formula (an area or vehicle type a provider chose) neutralised."""
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle, lineterminator="\r\n")
        writer.writerow(names)
        for row in rows:
            writer.writerow([_cell(v) for v in row])


def _cell(value: Any) -> Any:
    if value is None:
        return ""
    return neutralise(value) if isinstance(value, str) else value


def write_meta(out: Path, meta: dict[str, Any], columns: Sequence[Column]) -> Path:
    """``FILE.meta.json``: the export metadata with this format's own columns."""
    path = sidecar(out, ".meta.json")
    meta = {**meta, "columns": [c.__dict__ for c in columns]}
    path.write_text(json.dumps(meta, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    return path


def integral(value: float) -> int | float:
    """``3`` for 3.0 (sums of integers travel as doubles), the value otherwise."""
    return int(value) if float(value).is_integer() else value


def quiet_before(contents: ViewContents, meta: dict[str, Any]) -> int | None:
    """The view's first released window, before which nothing happened: known only when the
    whole topic was read (no ``--since``) and nothing was left out or unreadable (an earlier
    contract version may have released the windows before, in a schema this one does not
    read, or a window lacks its report)."""
    if (
        meta.get("since") is not None
        or contents.left_out
        or contents.undecodable
        or not contents.reports
    ):
        return None
    return min(r.window_start for r in contents.reports)


def quiet_since(contents: ViewContents) -> int:
    """The start of the contract's validity: no window before it counts as quiet (nothing
    was covered then, so a month that starts earlier is not a whole month)."""
    return int(contents.contract.validity.start.timestamp() * 1000)
