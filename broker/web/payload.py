"""The JSON the pages fetch: a view's terms and windows, one window's groups with geometry.

Only what a release holds goes out: published groups (dimension values and measures), and per
window its suppression report's *group* counts: the share of groups suppressed, never a
suppressed value (a report carries none). Geometry comes from the same ``Places`` the GeoJSON
export uses (H3 hexagons, zone polygons, grid squares, origin → destination lines), in GeoJSON
order ``[lon, lat]``; the territory outline from the contract.
"""

from __future__ import annotations

import math
from typing import Any

from broker.analysts.export.geojson import Places
from broker.analysts.export.table import columns, flat_measures
from broker.kafka.public_reader import WindowReport, iso_utc
from broker.web.feed import Released
from contracts.durations import format_duration
from contracts.model import Contract, GridDimension, H3Dimension, View, ZonesDimension

NUMERIC = ("integer", "number")


def measure_columns(view: View) -> list[dict[str, str]]:
    """The numeric columns a map can colour by (name, description)."""
    dims = {d.name for d in view.group_by}
    return [
        {"name": c.name, "description": c.description}
        for c in columns(view)
        if c.type in NUMERIC and c.name not in dims
    ]


def map_kind(view: View) -> str:
    """``areas`` (one spatial dimension), ``lines`` (origin, destination) or ``none``."""
    spatial = [
        d for d in view.group_by if isinstance(d, H3Dimension | ZonesDimension | GridDimension)
    ]
    return {1: "areas", 2: "lines"}.get(len(spatial), "none")


def territory_outline(contract: Contract) -> list[list[list[float]]]:
    """The territory's rings as ``[[lon, lat], ...]`` lists (outer rings and holes alike)."""
    return [
        [[lon, lat] for lon, lat in ring]
        for polygon in contract.territory.polygons
        for ring in polygon
    ]


def suppressed_share(report: WindowReport) -> float | None:
    """Suppressed groups / all groups of the window; None when not stated (noised views)."""
    if report.groups_suppressed is None:
        return None
    total = report.groups_published + report.groups_suppressed
    return report.groups_suppressed / total if total else 0.0


def window_row(report: WindowReport) -> dict[str, Any]:
    """One window of the slider: bounds and what its suppression report says."""
    return {
        "start": report.window_start,
        "end": report.window_end,
        "start_iso": iso_utc(report.window_start),
        "end_iso": iso_utc(report.window_end),
        "k": report.k,
        "groups_published": report.groups_published,
        "groups_suppressed": report.groups_suppressed,
        "suppressed_share": suppressed_share(report),
        "withheld_reason": report.withheld_reason,
        "epsilon": report.epsilon,
    }


def _finite(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if math.isfinite(value) else None


def ranges(view: View, released: list[Released]) -> dict[str, list[float]]:
    """Min and max of each numeric measure over every released group (stable colours)."""
    out: dict[str, list[float]] = {}
    for window in released:
        for group in window.groups.values():
            for name, value in flat_measures(view, group.measures).items():
                number = _finite(value)
                if number is None:
                    continue
                low, high = out.get(name, [number, number])
                out[name] = [min(low, number), max(high, number)]
    return out


def view_summary(contract: Contract, view: View, released: list[Released]) -> dict[str, Any]:
    """Terms, measures, territory and released windows of one view."""
    return {
        "contract": {
            "id": contract.id,
            "version": contract.version,
            "title": contract.title,
            "provider": contract.provider.name,
            "beneficiary": contract.beneficiary.name,
            "licence": contract.licence,
            "attribution": contract.attribution,
        },
        "view": {
            "name": view.name,
            "description": view.description,
            "window": format_duration(view.window),
            "k": view.k,
            "epsilon_per_window": (
                float(view.epsilon_per_window) if view.noise is not None else None
            ),
            "dimensions": [d.name for d in view.group_by],
            "measures": measure_columns(view),
            "map": map_kind(view),
        },
        "territory": territory_outline(contract),
        "ranges": ranges(view, released),
        "windows": [window_row(r.report) for r in released],
    }


def window_groups(contract: Contract, view: View, released: Released) -> dict[str, Any]:
    """One released window: its report and its groups with geometry (sorted, stable)."""
    places = Places(contract, view)
    groups = []
    for key in sorted(released.groups):
        group = released.groups[key]
        groups.append(
            {
                "dimensions": {d.name: group.group.get(d.name) for d in view.group_by},
                "measures": {
                    name: value if _finite(value) is not None or value is None else None
                    for name, value in flat_measures(view, group.measures).items()
                },
                "geometry": places.geometry(group.group),
            }
        )
    return {"window": window_row(released.report), "groups": groups}
