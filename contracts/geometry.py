"""Plain GeoJSON-like polygons for territories and zones (pure, no I/O).

Coordinates are ``(lon, lat)`` pairs as in GeoJSON. A ``Ring`` is a closed list of points, a
``Polygon`` is an outer ring followed by holes, a ``MultiPolygon`` is a tuple of polygons.
Point-in-polygon is the even-odd ray test: exact enough for administrative boundaries, and it
keeps ``shapely`` out of the dependency list.

``Region.contains`` is the one point-in-area test of respublica: the territory check at ingest
(``connectors.territory``), the territory check and the zones at aggregation
(``policies.generalise``) all call it, so they can never disagree on a point.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

Point = tuple[float, float]
Ring = tuple[Point, ...]
Polygon = tuple[Ring, ...]
MultiPolygon = tuple[Polygon, ...]


class GeometryError(ValueError):
    """A geometry is malformed; the message names the rule, never the coordinates."""


@dataclass(frozen=True)
class Zone:
    """A named area used by a ``zones`` dimension: the property value and its polygons."""

    value: str
    polygons: MultiPolygon

    @functools.cached_property
    def region(self) -> Region:
        """The zone's polygons, ready for point tests."""
        return Region.of(self.polygons)

    def contains(self, lon: float, lat: float) -> bool:
        """True when the point lies inside the zone (``Region.contains``)."""
        return self.region.contains(lon, lat)


@dataclass(frozen=True, slots=True)
class Region:
    """A multipolygon ready for point tests: its bounding box precomputed.

    ``contains`` is the even-odd ray test of ``multipolygon_contains`` behind a bounding-box
    prefilter, with one rule of its own: an axis-aligned rectangle (a ``bbox`` territory, a
    rectangular zone) contains its whole boundary, as the box ``[west, east] × [south, north]``
    reads. Other polygons keep the ray test's half-open boundary.
    """

    polygons: MultiPolygon
    west: float
    south: float
    east: float
    north: float
    is_box: bool
    """The polygons are exactly the bounding box: the prefilter alone decides."""

    @classmethod
    def of(cls, polygons: Iterable[Iterable[Iterable[Sequence[float]]]]) -> Region:
        """Freeze ``(lon, lat)`` coordinates (lists or tuples, ints or floats) to floats."""
        frozen: MultiPolygon = tuple(
            tuple(tuple((float(p[0]), float(p[1])) for p in ring) for ring in polygon)
            for polygon in polygons
        )
        points = [p for polygon in frozen for ring in polygon for p in ring]
        if not points:
            msg = "a region needs at least one point"
            raise GeometryError(msg)
        west, east = min(p[0] for p in points), max(p[0] for p in points)
        south, north = min(p[1] for p in points), max(p[1] for p in points)
        corners = {(west, south), (east, south), (east, north), (west, north)}
        is_box = (
            len(frozen) == 1
            and len(frozen[0]) == 1
            and set(frozen[0][0]) == corners
            and west < east
            and south < north
        )
        return cls(frozen, west, south, east, north, is_box)

    @property
    def bbox(self) -> tuple[float, float, float, float]:
        """``(west, south, east, north)``."""
        return (self.west, self.south, self.east, self.north)

    def contains(self, lon: float, lat: float) -> bool:
        """True when ``(lon, lat)`` lies in the region (see the class docstring for edges)."""
        if not (self.west <= lon <= self.east and self.south <= lat <= self.north):
            return False
        return self.is_box or multipolygon_contains(self.polygons, lon, lat)


def bbox_polygon(bbox: Sequence[float]) -> MultiPolygon:
    """The rectangle ``[min_lon, min_lat, max_lon, max_lat]`` as a one-polygon multipolygon."""
    west, south, east, north = bbox
    ring: Ring = ((west, south), (east, south), (east, north), (west, north), (west, south))
    return ((ring,),)


def geometry_polygons(geojson: Mapping[str, Any]) -> MultiPolygon:
    """Polygons of a GeoJSON ``Polygon``/``MultiPolygon`` geometry or a ``Feature`` holding one.

    A ``FeatureCollection`` is accepted too; its features' polygons are merged (for territory
    files exported from GIS tools as a collection of one feature).
    """
    kind = geojson.get("type")
    if kind == "FeatureCollection":
        features = geojson.get("features")
        if not isinstance(features, list) or not features:
            msg = "feature collection has no features"
            raise GeometryError(msg)
        return tuple(p for feature in features for p in geometry_polygons(_as_map(feature)))
    if kind == "Feature":
        return geometry_polygons(_as_map(geojson.get("geometry")))
    if kind == "Polygon":
        return (_polygon(geojson.get("coordinates")),)
    if kind == "MultiPolygon":
        coordinates = geojson.get("coordinates")
        if not isinstance(coordinates, list) or not coordinates:
            msg = "multipolygon has no polygons"
            raise GeometryError(msg)
        return tuple(_polygon(polygon) for polygon in coordinates)
    msg = "geometry must be a GeoJSON Polygon or MultiPolygon"
    raise GeometryError(msg)


def multipolygon_contains(polygons: MultiPolygon, lon: float, lat: float) -> bool:
    """True when the point is inside any polygon (inside its outer ring, outside its holes)."""
    return any(_polygon_contains(polygon, lon, lat) for polygon in polygons)


def _polygon_contains(polygon: Polygon, lon: float, lat: float) -> bool:
    outer, *holes = polygon
    return _ring_contains(outer, lon, lat) and not any(_ring_contains(h, lon, lat) for h in holes)


def _ring_contains(ring: Ring, lon: float, lat: float) -> bool:
    inside = False
    for (x1, y1), (x2, y2) in zip(ring, ring[1:], strict=False):
        if (y1 > lat) != (y2 > lat) and lon < x1 + (lat - y1) * (x2 - x1) / (y2 - y1):
            inside = not inside
    return inside


def _polygon(coordinates: Any) -> Polygon:
    if not isinstance(coordinates, list) or not coordinates:
        msg = "polygon has no rings"
        raise GeometryError(msg)
    return tuple(_ring(ring) for ring in coordinates)


def _ring(coordinates: Any) -> Ring:
    if not isinstance(coordinates, list):
        msg = "a ring must be a list of [lon, lat] points"
        raise GeometryError(msg)
    ring = tuple(_point(point) for point in coordinates)
    if len(ring) < 4:
        msg = "a ring needs at least 4 points (first and last equal)"
        raise GeometryError(msg)
    if ring[0] != ring[-1]:
        msg = "a ring must be closed (first point equal to last)"
        raise GeometryError(msg)
    for lon, lat in ring:
        _check_lon_lat(lon, lat)
    return ring


def _point(point: Any) -> Point:
    valid = isinstance(point, list | tuple) and len(point) in (2, 3)
    if not valid or not all(_is_number(c) for c in point):
        msg = "a point must be [lon, lat] numbers"
        raise GeometryError(msg)
    return (float(point[0]), float(point[1]))


def _check_lon_lat(lon: float, lat: float) -> None:
    if not -180.0 <= lon <= 180.0:
        msg = "longitude must be within [-180, 180] (points are [lon, lat], GeoJSON order)"
        raise GeometryError(msg)
    if not -90.0 <= lat <= 90.0:
        msg = "latitude must be within [-90, 90] (points are [lon, lat], GeoJSON order)"
        raise GeometryError(msg)


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _as_map(value: Any) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        msg = "expected a GeoJSON object"
        raise GeometryError(msg)
    return value
