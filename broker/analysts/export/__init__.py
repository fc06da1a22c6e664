"""Open-data files from a view's releases: CSV (+ ``.meta.json``), Parquet, GeoJSON.

In: ``ViewContents`` from ``broker.kafka.public_reader``. Out: files an open-data portal takes as
they are. Every format has the same columns (documented in ``docs/analysts.md``):

* ``window_start``, ``window_end``: the window, ISO 8601 UTC (Parquet: UTC timestamps, ms);
* one column per dimension of the view, in ``group_by`` order (text);
* one column per measure; a quantiles measure ``m`` with ``q: [0.5, 0.9]`` becomes
  ``m_p50`` and ``m_p90``.

Only windows that have a suppression report and records of the contract's policy hash are
exported (``read_view`` leaves the rest out); ``left_out`` in the metadata counts them.

The metadata (contract, version, policy hash, licence, attribution, k, ε, column docs, what
was left out) goes to ``FILE.meta.json`` for CSV, to the key-value metadata of a Parquet file,
and to the ``metadata`` member of a GeoJSON FeatureCollection (``geojson.py``). With
``include_reports`` the windows' suppression reports go to ``FILE.reports.csv`` /
``FILE.reports.parquet`` (GeoJSON: ``metadata.reports``).

The regulatory formats have the columns a regulation fixes instead: ``mds-reports``
(``mds_reports.py``, MDS 2.0.2 Reports) and ``eu-str-activity`` (``eu_str.py``, Regulation
(EU) 2024/1028), aggregated over calendar periods by ``periods.py``.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from broker.analysts.export.regulatory import RegulatoryOptions
from broker.analysts.export.table import FORMATS, REGULATORY_FORMATS, ExportError, metadata
from broker.kafka.public_reader import ViewContents

__all__ = ["FORMATS", "REGULATORY_FORMATS", "ExportError", "RegulatoryOptions", "export"]


def export(
    contents: ViewContents,
    out: Path,
    fmt: str,
    *,
    include_reports: bool = False,
    since_ms: int | None = None,
    until_ms: int | None = None,
    regulatory: RegulatoryOptions | None = None,
) -> list[Path]:
    """Write ``contents`` as ``fmt`` to ``out``; returns every file written."""
    if fmt in REGULATORY_FORMATS:
        return _regulatory(contents, out, fmt, include_reports, since_ms, until_ms, regulatory)
    writers: dict[str, Callable[..., list[Path]]] = {}
    if fmt == "csv":
        from broker.analysts.export.csv import write_csv

        writers["csv"] = write_csv
    elif fmt == "parquet":
        from broker.analysts.export.parquet import write_parquet  # pyarrow loads only when needed

        writers["parquet"] = write_parquet
    elif fmt == "geojson":
        from broker.analysts.export.geojson import write_geojson

        writers["geojson"] = write_geojson
    writer = writers.get(fmt)
    if writer is None:
        msg = f"unknown format {fmt!r}; use one of {', '.join(FORMATS + REGULATORY_FORMATS)}"
        raise ExportError(msg)
    meta = metadata(contents, since_ms=since_ms, until_ms=until_ms)
    try:
        return writer(contents, out, meta, include_reports=include_reports)
    except OSError as exc:
        msg = f"cannot write {out} ({exc.strerror or type(exc).__name__})"
        raise ExportError(msg) from exc


def _regulatory(
    contents: ViewContents,
    out: Path,
    fmt: str,
    include_reports: bool,
    since_ms: int | None,
    until_ms: int | None,
    options: RegulatoryOptions | None,
) -> list[Path]:
    """``mds-reports`` or ``eu-str-activity``: the file a regulation asks for, plus its
    ``FILE.meta.json``."""
    if include_reports:
        msg = f"--include-reports does not apply to {fmt}: its redaction is in the file itself"
        raise ExportError(msg)
    if fmt == "mds-reports":
        from broker.analysts.export.mds_reports import write_mds_reports as write
    else:
        from broker.analysts.export.eu_str import write_eu_str as write
    meta = metadata(contents, since_ms=since_ms, until_ms=until_ms)
    try:
        return write(contents, out, meta, options or RegulatoryOptions())
    except OSError as exc:
        msg = f"cannot write {out} ({exc.strerror or type(exc).__name__})"
        raise ExportError(msg) from exc
