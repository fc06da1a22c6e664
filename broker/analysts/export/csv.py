"""CSV export: UTF-8 with a header row, plus ``FILE.meta.json`` (and ``FILE.reports.csv``)."""

from __future__ import annotations

import csv
import json
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from broker.analysts.export.table import (
    REPORT_COLUMNS,
    WINDOW_COLUMNS,
    columns,
    report_row,
    reports_path,
    sidecar,
    table_row,
)
from broker.kafka.public_reader import ViewContents, iso_utc

FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
"""A text cell starting with one of these is read as a formula by spreadsheets (OWASP, "CSV
injection"): ``=HYPERLINK(...)`` from a provider's field value would run on an analyst's
machine."""


def neutralise(text: str) -> str:
    """A text cell a spreadsheet shows as text: a leading formula character gets a ``'``."""
    return "'" + text if text.startswith(FORMULA_STARTS) else text


def _csv_value(name: str, value: Any) -> Any:
    if name in WINDOW_COLUMNS:
        return iso_utc(int(value))
    if value is None:
        return ""
    return neutralise(value) if isinstance(value, str) else value


def _write_csv(path: Path, names: Sequence[str], rows: Iterable[dict[str, Any]]) -> None:
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(
            handle, lineterminator="\r\n"
        )  # RFC 4180: a CR or LF in a cell is quoted
        writer.writerow(names)
        for row in rows:
            writer.writerow([_csv_value(n, row.get(n)) for n in names])


def write_csv(
    contents: ViewContents, out: Path, meta: dict[str, Any], *, include_reports: bool = False
) -> list[Path]:
    """Plain CSV (UTF-8, header row) plus ``FILE.meta.json``; returns the files written."""
    view = contents.view
    _write_csv(out, [c.name for c in columns(view)], (table_row(view, g) for g in contents.groups))
    written = [out]
    if include_reports:
        reports = reports_path(out)
        _write_csv(reports, REPORT_COLUMNS, (report_row(r) for r in contents.reports))
        meta = {**meta, "reports_file": reports.name}
        written.append(reports)
    meta_path = sidecar(out, ".meta.json")
    meta_path.write_text(json.dumps(meta, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    written.append(meta_path)
    return written
