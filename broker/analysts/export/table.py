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
    Noise,
    QuantilesMeasure,
    RoundDimension,
    SumMeasure,
    View,
    ZonesDimension,
)
from contracts.policy_hash import policy_hash

FORMATS = ("csv", "geojson", "parquet")
REGULATORY_FORMATS = ("mds-reports", "eu-str-activity")
"""Files a regulation defines (``mds_reports.py``, ``eu_str.py``): their own columns."""
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


def _measure_columns(measure: Any, view: View) -> list[Column]:
    if view.noise is not None:
        return _noised_columns(measure, view, view.noise)
    k = view.k
    count = _first_name(view, CountMeasure)
    if isinstance(measure, CountMeasure):
        return [Column(measure.name, "integer", "number of events in the group (exact)")]
    if isinstance(measure, DistinctSubjectsMeasure):
        bound = f", and at most `{count}`" if count else ""
        text = (
            f"number of distinct subjects in the group (exact): at least k = {k}, since a "
            f"smaller group is never published{bound}"
        )
        return [Column(measure.name, "integer", text)]
    if isinstance(measure, DistinctMeasure):
        text = f"number of distinct values of '{measure.field}' in the group (exact)"
        return [Column(measure.name, "integer", text)]
    if isinstance(measure, SumMeasure):
        return [Column(measure.name, "number", f"sum of '{measure.field}' (exact)")]
    if isinstance(measure, MeanMeasure):
        text = f"mean of '{measure.field}' (exact; empty when no event carried it)"
        return [Column(measure.name, "number", text)]
    if isinstance(measure, QuantilesMeasure):
        return [
            Column(
                f"{measure.name}_{quantile_label(q)}",
                "number",
                f"quantile {q:g} of '{measure.field}' (exact)",
            )
            for q in measure.q
        ]
    return [Column(measure.name, "number", "measure")]


def _noised_columns(measure: Any, view: View, noise: Noise) -> list[Column]:
    """Noise covers count, distinct_subjects, distinct and sum (the only measures a noised
    view may have): each value is a noisy estimate, so no exact bound holds for it."""
    bounded = (
        f"each subject counting at most {noise.max_contributions} event(s) in at most "
        f"{noise.max_groups} group(s) of a window"
    )
    added = (
        f"plus differential-privacy noise ({noise.mechanism}, ε = {noise.epsilon:g} for "
        "this measure per window); not exact, never negative"
    )
    count = _first_name(view, CountMeasure)
    subjects = _first_name(view, DistinctSubjectsMeasure)
    if isinstance(measure, CountMeasure):
        below = f"; it may be below `{subjects}`" if subjects else ""
        text = f"number of events in the group, {bounded}, {added}{below}"
        return [Column(measure.name, "integer", text)]
    if isinstance(measure, DistinctSubjectsMeasure):
        above = f" and may exceed `{count}`" if count else ""
        text = (
            f"number of distinct subjects in the group, {added}; the group had at least "
            f"k = {view.k} distinct subjects, but this value may be below k = {view.k}{above}"
        )
        return [Column(measure.name, "integer", text)]
    if isinstance(measure, DistinctMeasure):
        text = f"number of distinct values of '{measure.field}' in the group, {added}"
        return [Column(measure.name, "integer", text)]
    bound = noise.value_bound
    clamp = f", each value clamped into [-{bound:g}, {bound:g}]" if bound is not None else ""
    field = getattr(measure, "field", "?")
    return [Column(measure.name, "number", f"sum of '{field}'{clamp}, {bounded}, {added}")]


def _first_name(view: View, kind: type) -> str | None:
    return next((m.name for m in view.measures if isinstance(m, kind)), None)


def missing_groups(view: View) -> str:
    """In words: what a group absent from a released window means (never zero)."""
    names = [d.name for d in view.group_by]
    if not names:
        which = "The window's one group, when it is absent from a released window,"
    else:
        values = (
            f"a value of {names[0]}" if len(names) == 1 else f"a combination of {', '.join(names)}"
        )
        which = f"A group ({values}) absent from a released window"
    threshold = (
        ""
        if view.noise is None
        else ", or its noisy subject count did not reach the release threshold k + margin = "
        f"{view.k + view.noise.selection_margin} (the differential-privacy release decision)"
    )
    reports = (
        "The window's suppression report says how many groups were suppressed "
        "(groups_suppressed, with --include-reports)."
        if view.noise is None
        else "How many groups were suppressed is not published for a noised view."
    )
    return (
        f"{which} had fewer than k = {view.k} distinct subjects, or none at all{threshold}: "
        "it was suppressed, or nothing happened there. It is unknown, not zero: never fill "
        f"it in as 0 or add it to a total. {reports}"
    )


def columns(view: View) -> list[Column]:
    """The columns of a view's export, in file order."""
    out = [
        Column("window_start", "timestamp", "start of the window (inclusive), UTC"),
        Column("window_end", "timestamp", "end of the window (exclusive), UTC"),
    ]
    out += [Column(d.name, "string", _dimension_doc(d)) for d in view.group_by]
    for measure in view.measures:
        out += _measure_columns(measure, view)
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
        "missing_groups": missing_groups(view),
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
