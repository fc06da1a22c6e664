"""GeoJSON export (RFC 7946): one Feature per published group of a window.

The geometry comes from the view's spatial dimensions:

* one spatial dimension: the area of its value, an H3 cell's hexagon (``h3.cell_to_boundary``),
  a zone's polygon(s) from the contract's zone file, a grid cell's square;
* two (origin and destination): a ``LineString`` from the first area's centre to the second's,
  or a ``Point`` at the centre when both are the same area (trips that stay in one cell: a
  line of length zero is invalid in OGC Simple Features, GEOS and so QGIS/PostGIS);
* none, more than two, or a null value: ``geometry: null`` (valid GeoJSON).

Coordinates are ``[lon, lat]`` (GeoJSON order, the reverse of H3's), rounded to 7 decimals
(~1 cm); outer rings are closed and counter-clockwise as RFC 7946 asks. ``properties`` hold
the window bounds (ISO 8601 UTC), the dimension values and the measures (same names as the
CSV columns). Licence, attribution and the rest of the export metadata are in the
FeatureCollection's ``metadata`` member (a foreign member: GeoJSON readers ignore it).
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import h3

from broker.analysts.export.table import report_row, table_row
from broker.kafka.public_reader import ViewContents, iso_utc
from contracts.geometry import MultiPolygon, Ring
from contracts.model import Contract, GridDimension, H3Dimension, View, ZonesDimension
from policies.generalise import EARTH_RADIUS_M, Area, Territory

Coordinates = list[list[float]]
Geometry = dict[str, Any]
_DECIMALS = 7


def _point(lon: float, lat: float) -> list[float]:
    return [round(lon, _DECIMALS), round(lat, _DECIMALS)]


def signed_area(ring: Sequence[Sequence[float]]) -> float:
    """Shoelace area of a closed ``[lon, lat]`` ring: positive when counter-clockwise."""
    return sum(x0 * y1 - x1 * y0 for (x0, y0), (x1, y1) in zip(ring, ring[1:], strict=False)) / 2


def _ring(points: Sequence[tuple[float, float]], *, outer: bool) -> Coordinates:
    """A closed ring, counter-clockwise if ``outer`` (RFC 7946 §3.1.6), clockwise otherwise."""
    ring = [_point(lon, lat) for lon, lat in points]
    if ring[0] != ring[-1]:
        ring.append(list(ring[0]))
    if (signed_area(ring) > 0) != outer:
        ring.reverse()
    return ring


class Places:
    """Area and centre of each value of a view's spatial dimensions."""

    def __init__(self, contract: Contract, view: View) -> None:
        self.view = view
        self.spatial = [
            d for d in view.group_by if isinstance(d, H3Dimension | ZonesDimension | GridDimension)
        ]
        self._zones = {
            d.name: {z.value: z.polygons for z in d.zones}
            for d in self.spatial
            if isinstance(d, ZonesDimension)
        }
        self._ref_lat = Territory(Area.of("territory", contract.territory.polygons)).ref_lat()

    def geometry(self, group: dict[str, str | None]) -> Geometry | None:
        """The Feature geometry of a group, or None."""
        values = [(d, group.get(d.name)) for d in self.spatial]
        if not values or len(values) > 2 or any(v is None for _, v in values):
            return None
        try:
            if len(values) == 1:
                dim, value = values[0]
                return self._area(dim, str(value))
            ends = [self._centre(dim, str(value)) for dim, value in values]
        except (ValueError, KeyError, h3.H3BaseException):  # a label this view cannot place
            return None
        start, end = _point(*ends[0]), _point(*ends[1])
        if start == end:  # origin = destination: a zero-length line is invalid in GIS tools
            return {"type": "Point", "coordinates": start}
        return {"type": "LineString", "coordinates": [start, end]}

    def _area(self, dim: Any, value: str) -> Geometry:
        polygons = self._polygons(dim, value)
        coords = [[_ring(ring, outer=i == 0) for i, ring in enumerate(p)] for p in polygons]
        if len(coords) == 1:
            return {"type": "Polygon", "coordinates": coords[0]}
        return {"type": "MultiPolygon", "coordinates": coords}

    def _polygons(self, dim: Any, value: str) -> MultiPolygon:
        if isinstance(dim, H3Dimension):
            ring: Ring = tuple((lon, lat) for lat, lon in h3.cell_to_boundary(value))
            return ((ring,),)
        if isinstance(dim, ZonesDimension):
            return self._zones[dim.name][value]
        west, south, east, north = self._grid_box(dim, value)
        square: Ring = ((west, south), (east, south), (east, north), (west, north))
        return ((square,),)

    def _centre(self, dim: Any, value: str) -> tuple[float, float]:
        if isinstance(dim, H3Dimension):
            lat, lon = h3.cell_to_latlng(value)
            return lon, lat
        if isinstance(dim, ZonesDimension):
            return _centroid(self._zones[dim.name][value])
        west, south, east, north = self._grid_box(dim, value)
        return (west + east) / 2, (south + north) / 2

    def _grid_box(self, dim: GridDimension, value: str) -> tuple[float, float, float, float]:
        """Inverse of ``policies.generalise.Grid.cell`` for a ``g<size>:<ix>:<iy>`` label."""
        _, ix, iy = value.split(":")
        size = dim.size_m
        x_scale = EARTH_RADIUS_M * math.cos(math.radians(self._ref_lat))
        west = math.degrees(int(ix) * size / x_scale)
        south = math.degrees(int(iy) * size / EARTH_RADIUS_M)
        return (
            west,
            south,
            west + math.degrees(size / x_scale),
            south + math.degrees(size / EARTH_RADIUS_M),
        )


def _centroid(polygons: MultiPolygon) -> tuple[float, float]:
    """Area-weighted centroid of the outer rings (holes ignored: a label point, not a survey)."""
    total = cx = cy = 0.0
    for polygon in polygons:
        ring = polygon[0]
        for (x0, y0), (x1, y1) in zip(ring, ring[1:], strict=False):
            cross = x0 * y1 - x1 * y0
            total += cross
            cx += (x0 + x1) * cross
            cy += (y0 + y1) * cross
    if total == 0:
        first = polygons[0][0][0]
        return first[0], first[1]
    return cx / (3 * total), cy / (3 * total)


def feature_collection(
    contents: ViewContents, meta: dict[str, Any], *, include_reports: bool = False
) -> dict[str, Any]:
    """The FeatureCollection of a view's releases, metadata in the ``metadata`` member."""
    places = Places(contents.contract, contents.view)
    features = []
    for group in contents.groups:
        props = table_row(contents.view, group)
        props["window_start"], props["window_end"] = _bounds(props)
        features.append(
            {"type": "Feature", "geometry": places.geometry(group.group), "properties": props}
        )
    metadata = dict(meta)
    if include_reports:
        reports = [report_row(r) for r in contents.reports]
        for row in reports:
            row["window_start"], row["window_end"] = _bounds(row)
        metadata["reports"] = reports
    return {"type": "FeatureCollection", "metadata": metadata, "features": features}


def _bounds(row: dict[str, Any]) -> tuple[str, str]:
    return iso_utc(int(row["window_start"])), iso_utc(int(row["window_end"]))


def write_geojson(
    contents: ViewContents, out: Path, meta: dict[str, Any], *, include_reports: bool = False
) -> list[Path]:
    """One ``.geojson`` file (UTF-8, no NaN); returns ``[out]``."""
    document = feature_collection(contents, meta, include_reports=include_reports)
    with out.open("w", encoding="utf-8") as handle:
        json.dump(document, handle, ensure_ascii=False, allow_nan=False, separators=(",", ":"))
        handle.write("\n")
    return [out]
