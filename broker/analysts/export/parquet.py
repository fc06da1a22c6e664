"""Parquet export (pyarrow): the CSV columns with native types, metadata in the file itself.

Window bounds are ``timestamp[ms, tz=UTC]``, dimensions ``string``, integer measures
``int64``, other measures ``double``. The export metadata is stored as Parquet key-value
metadata: ``respublica`` holds the whole document as JSON, and ``licence``, ``attribution``,
``contract``, ``contract_version``, ``policy_hash``, ``view``, ``k`` and ``epsilon`` are
repeated as plain keys for tools that show key-value pairs. Column docs are field metadata
(``description``).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from broker.analysts.export.table import (
    REPORT_COLUMNS,
    Column,
    columns,
    report_row,
    reports_path,
    table_row,
)
from broker.kafka.public_reader import ViewContents

_TYPES = {
    "timestamp": pa.timestamp("ms", tz="UTC"),
    "string": pa.string(),
    "integer": pa.int64(),
    "number": pa.float64(),
}
_PLAIN_KEYS = (
    "contract",
    "contract_version",
    "policy_hash",
    "view",
    "licence",
    "attribution",
    "k",
    "missing_groups",
    "epsilon",
    "generated_at",
)
_REPORT_TYPES = {
    "window_start": "timestamp",
    "window_end": "timestamp",
    "k": "integer",
    "groups_published": "integer",
    "groups_suppressed": "integer",
    "withheld_reason": "string",
    "epsilon": "number",
}


def arrow_schema(cols: list[Column], meta: dict[str, Any]) -> pa.Schema:
    """The Arrow schema of an export: typed fields with docs, and the file metadata."""
    fields = [
        pa.field(c.name, _TYPES[c.type], metadata={"description": c.description}) for c in cols
    ]
    kv = {"respublica": json.dumps(meta, ensure_ascii=False)}
    kv |= {k: _text(meta.get(k)) for k in _PLAIN_KEYS if meta.get(k) is not None}
    return pa.schema(fields, metadata=kv)


def _text(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value)


def _table(cols: list[Column], rows: list[dict[str, Any]], meta: dict[str, Any]) -> pa.Table:
    schema = arrow_schema(cols, meta)
    data = {c.name: [_cell(c, row.get(c.name)) for row in rows] for c in cols}
    return pa.Table.from_pydict(data, schema=schema)


def _cell(column: Column, value: Any) -> Any:
    if value is None:
        return None
    if column.type == "integer":
        return int(value)
    if column.type == "number":
        return float(value)
    return value  # timestamps: ms since the epoch, which Arrow takes as is


def write_parquet(
    contents: ViewContents, out: Path, meta: dict[str, Any], *, include_reports: bool = False
) -> list[Path]:
    """One Parquet file (and ``FILE.reports.parquet`` with the reports); returns the paths."""
    view = contents.view
    rows = [table_row(view, g) for g in contents.groups]
    written = []
    if include_reports:
        reports = reports_path(out)
        meta = {**meta, "reports_file": reports.name}
        report_cols = [
            Column(n, _REPORT_TYPES[n], f"suppression report: {n}") for n in REPORT_COLUMNS
        ]
        pq.write_table(
            _table(report_cols, [report_row(r) for r in contents.reports], meta), reports
        )
        written.append(reports)
    pq.write_table(_table(columns(view), rows, meta), out)
    return [out, *written]


def read_metadata(path: Path) -> dict[str, Any]:
    """The ``respublica`` metadata document of an exported Parquet file."""
    kv = pq.read_schema(path).metadata or {}
    return dict(json.loads(kv[b"respublica"]))
