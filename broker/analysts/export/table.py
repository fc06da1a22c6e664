"""The columns, rows and metadata every export format shares (one place, so the formats
agree). The writers are siblings: ``csv``, ``geojson``, ``parquet``; ``export`` in this
package's ``__init__`` picks one."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from broker.kafka.public_reader import (
    PublishedGroup,
    ViewContents,
    WindowReport,
    iso_utc,
)
from broker.kafka.publish import H_CONTRACT_VERSION, H_POLICY_HASH
from contracts.durations import format_duration
from contracts.errors import RespublicaError
from contracts.model import (
    Contract,
    CountMeasure,
    DistinctMeasure,
    DistinctSubjectsMeasure,
    FieldDimension,
    GridDimension,
    H3Dimension,
    MeanMeasure,
    QuantilesMeasure,
    RoundDimension,
    SumMeasure,
    View,
    ZonesDimension,
)
from contracts.policy_hash import policy_hash

FORMATS = ("csv", "geojson", "parquet")
WINDOW_COLUMNS = ("window_start", "window_end")
REPORT_COLUMNS = (
    "window_start",
    "window_end",
    "k",
    "groups_published",
    "groups_suppressed",
    "withheld_reason",
    "epsilon",
)


class ExportError(RespublicaError):
    """A file could not be written (unknown format, unwritable path)."""


@dataclass(frozen=True)
class Column:
    """One published column: its name, type (``timestamp|string|integer|number``) and doc."""

    name: str
    type: str
    description: str


def quantile_label(q: float) -> str:
    """``p50`` for 0.5, ``p99.9`` for 0.999: the column suffix of a quantile."""
    return f"p{round(q * 100, 6):g}"


def _dimension_doc(dim: Any) -> str:
    if isinstance(dim, H3Dimension):
        return f"H3 cell (v4 hex id, resolution {dim.resolution}) of the event's position"
    if isinstance(dim, ZonesDimension):
        return (
            f"name of the zone the event falls in (property '{dim.property_name}' "
            f"of {Path(dim.file).name})"
        )
    if isinstance(dim, GridDimension):
        return (
            f"square grid cell of {dim.size_m:g} m, label g<size>:<ix>:<iy> "
            "(south-west corner index)"
        )
    if isinstance(dim, RoundDimension):
        return f"'{dim.field}' rounded to {dim.decimals} decimal places"
    if isinstance(dim, FieldDimension):
        return f"value of the field '{dim.field}'"
    return "dimension"


def _measure_columns(measure: Any, noisy: bool) -> list[Column]:
    noise = " (with differential-privacy noise)" if noisy else ""
    if isinstance(measure, CountMeasure):
        return [Column(measure.name, "integer", f"number of events in the group{noise}")]
    if isinstance(measure, DistinctSubjectsMeasure):
        return [
            Column(
                measure.name,
                "integer",
                f"number of distinct subjects in the group (at least k){noise}",
            )
        ]
    if isinstance(measure, DistinctMeasure):
        return [
            Column(
                measure.name, "integer", f"number of distinct values of '{measure.field}'{noise}"
            )
        ]
    if isinstance(measure, SumMeasure):
        return [Column(measure.name, "number", f"sum of '{measure.field}'{noise}")]
    if isinstance(measure, MeanMeasure):
        return [
            Column(
                measure.name,
                "number",
                f"mean of '{measure.field}' (empty when no event carried it)",
            )
        ]
    if isinstance(measure, QuantilesMeasure):
        return [
            Column(
                f"{measure.name}_{quantile_label(q)}",
                "number",
                f"quantile {q:g} of '{measure.field}'",
            )
            for q in measure.q
        ]
    return [Column(measure.name, "number", "measure")]


def columns(view: View) -> list[Column]:
    """The columns of a view's export, in file order."""
    out = [
        Column("window_start", "timestamp", "start of the window (inclusive), UTC"),
        Column("window_end", "timestamp", "end of the window (exclusive), UTC"),
    ]
    out += [Column(d.name, "string", _dimension_doc(d)) for d in view.group_by]
    for measure in view.measures:
        out += _measure_columns(measure, view.noise is not None)
    return out


def flat_measures(view: View, measures: dict[str, Any]) -> dict[str, Any]:
    """Measures with each quantiles list spread over its ``<name>_p<q>`` columns."""
    out: dict[str, Any] = {}
    for measure in view.measures:
        value = measures.get(measure.name)
        if isinstance(measure, QuantilesMeasure):
            values = list(value) if value is not None else [None] * len(measure.q)
            for q, v in zip(measure.q, values, strict=False):
                out[f"{measure.name}_{quantile_label(q)}"] = v
        else:
            out[measure.name] = value
    return out


def table_row(view: View, group: PublishedGroup) -> dict[str, Any]:
    """One export row: window bounds in ms, dimensions, flattened measures."""
    return {
        "window_start": group.window_start,
        "window_end": group.window_end,
        **{d.name: group.group.get(d.name) for d in view.group_by},
        **flat_measures(view, group.measures),
    }


def report_row(report: WindowReport) -> dict[str, Any]:
    """One suppression-report row (window bounds in ms)."""
    return {name: getattr(report, name) for name in REPORT_COLUMNS}


def metadata(
    contents: ViewContents,
    *,
    generated_at: datetime | None = None,
    since_ms: int | None = None,
    until_ms: int | None = None,
) -> dict[str, Any]:
    """What a re-user must know: source, licence, attribution, privacy parameters, columns."""
    contract, view = contents.contract, contents.view
    moment = generated_at or datetime.now(UTC)
    return {
        "contract": contract.id,
        "contract_version": contract.version,
        "contract_title": contract.title,
        "policy_hash": policy_hash(contract),
        "published_under": _published_under(contents),
        "provider": contract.provider.name,
        "beneficiary": contract.beneficiary.name,
        "licence": contract.licence,
        "attribution": contract.attribution,
        "view": view.name,
        "description": view.description,
        "topic": contract.topic_public(view),
        "window": format_duration(view.window),
        "k": view.k,
        "epsilon": (float(view.epsilon_per_window) if view.noise is not None else None),
        "noise": _noise(contract, view),
        "since": iso_utc(since_ms) if since_ms is not None else None,
        "until": iso_utc(until_ms) if until_ms is not None else None,
        "windows": len(contents.windows()),
        "rows": len(contents.groups),
        "left_out": contents.left_out.to_dict(),
        "columns": [asdict(c) for c in columns(view)],
        "generated_at": moment.isoformat(timespec="seconds").replace("+00:00", "Z"),
    }


def _noise(contract: Contract, view: View) -> dict[str, Any] | None:
    if view.noise is None:
        return None
    return {
        "mechanism": view.noise.mechanism,
        "epsilon_per_measure": view.noise.epsilon,
        "noised_measures": view.noised_measures,
        "epsilon_per_window": float(view.epsilon_per_window),
        "budget": view.noise.budget,
        "period": format_duration(view.noise.period),
        "release_decisions_per_window": 1,
        "max_groups_per_subject": view.noise.max_groups,
        "max_contributions_per_group": view.noise.max_contributions,
        "value_bound": view.noise.value_bound,
        "release_threshold": view.k + view.noise.selection_margin,
        "delta_per_window": view.noise.selection_delta,
    }


def _published_under(contents: ViewContents) -> list[dict[str, str]]:
    """The (contract version, short policy hash) pairs the records carry, in order seen."""
    seen: dict[tuple[str, str], None] = {}
    rows: list[PublishedGroup | WindowReport] = [*contents.groups, *contents.reports]
    for row in rows:
        pair = (row.headers.get(H_CONTRACT_VERSION, ""), row.headers.get(H_POLICY_HASH, ""))
        seen.setdefault(pair, None)
    return [{"contract_version": v, "policy_hash": h} for v, h in seen]


def sidecar(out: Path, suffix: str) -> Path:
    """``data.csv`` → ``data.csv.meta.json`` (suffix ``.meta.json``)."""
    return out.with_name(out.name + suffix)


def reports_path(out: Path) -> Path:
    """``data.csv`` → ``data.reports.csv``."""
    return out.with_name(f"{out.stem}.reports{out.suffix}")
