"""Spatial and temporal generalisation: H3 cells, metric grid, named zones, buckets, rounding.

Every spatial function takes ``(lat, lon)`` in WGS84 degrees and either returns a cell label or
raises ``OutsideTerritory(reason)`` with one of ``REASONS``: a point that cannot be placed is
counted and reported, never silently dropped or silently put in a wrong cell.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import h3

from contracts.geometry import Region
from policies.base import OutsideTerritory

MISSING_LOCATION = "missing_location"
INVALID_LOCATION = "invalid_location"
OUTSIDE_TERRITORY = "outside_territory"
NO_ZONE = "no_zone"
REASONS = (MISSING_LOCATION, INVALID_LOCATION, OUTSIDE_TERRITORY, NO_ZONE)

EARTH_RADIUS_M = 6_371_008.8  # IUGG mean radius

Point = Sequence[float]  # (lon, lat), GeoJSON order
Ring = Sequence[Point]
Polygon = Sequence[Ring]  # outer ring, then holes
MultiPolygon = Sequence[Polygon]  # lists or tuples: ``Area.of`` freezes them


def coordinates(lat: Any, lon: Any) -> tuple[float, float]:
    """Validated ``(lat, lon)`` floats, or ``OutsideTerritory`` saying why not."""
    if lat is None or lon is None:
        raise OutsideTerritory(MISSING_LOCATION)
    try:
        flat, flon = float(lat), float(lon)
    except (TypeError, ValueError) as exc:
        raise OutsideTerritory(INVALID_LOCATION) from exc
    if not (-90.0 <= flat <= 90.0 and -180.0 <= flon <= 180.0):
        raise OutsideTerritory(INVALID_LOCATION)
    return flat, flon


def h3_cell(lat: Any, lon: Any, resolution: int) -> str:
    """The H3 cell (v4 API, hex string) containing the point."""
    flat, flon = coordinates(lat, lon)
    return str(h3.latlng_to_cell(flat, flon, resolution))


@dataclass(frozen=True, slots=True)
class Grid:
    """Square cells of ``size_m`` metres, by equirectangular projection at ``ref_lat``.

    ``x = R·λ·cos(φ_ref)``, ``y = R·φ`` (radians); cell ``(⌊x/size⌋, ⌊y/size⌋)`` labelled
    ``g<size>:<ix>:<iy>``. Distortion grows away from ``ref_lat`` (≈1.5 % at 1° of latitude),
    acceptable over a city; the label is exact and stable, which is what grouping needs.
    """

    size_m: float
    ref_lat: float

    def cell(self, lat: Any, lon: Any) -> str:
        """The label of the grid cell containing the point."""
        flat, flon = coordinates(lat, lon)
        x = EARTH_RADIUS_M * math.radians(flon) * math.cos(math.radians(self.ref_lat))
        y = EARTH_RADIUS_M * math.radians(flat)
        return f"g{self.size_m:g}:{math.floor(x / self.size_m)}:{math.floor(y / self.size_m)}"


@dataclass(frozen=True, slots=True)
class Area:
    """A named region (a zone, or the territory).

    Point-in-area is ``contracts.geometry.Region.contains``, the function the ingest territory
    check calls too (``connectors.territory``): both sides always agree on a point.
    """

    name: str
    region: Region

    @classmethod
    def of(cls, name: str, polygons: MultiPolygon) -> Area:
        """Freeze the coordinates and compute the bounding box."""
        return cls(name, Region.of(polygons))

    @property
    def bbox(self) -> tuple[float, float, float, float]:
        """``(west, south, east, north)``."""
        return self.region.bbox

    def contains(self, lon: float, lat: float) -> bool:
        """Inside an outer ring and outside its holes, for any polygon (``Region.contains``)."""
        return self.region.contains(lon, lat)


def geojson_polygons(geometry: dict[str, Any]) -> MultiPolygon:
    """Coordinates of a GeoJSON Polygon or MultiPolygon geometry as a multipolygon."""
    if geometry.get("type") == "Polygon":
        return [geometry["coordinates"]]
    if geometry.get("type") == "MultiPolygon":
        return list(geometry["coordinates"])
    msg = "zone geometry must be a GeoJSON Polygon or MultiPolygon"
    raise ValueError(msg)


class ZoneIndex:
    """Named zones; a point belongs to the first zone (in file order) that contains it."""

    def __init__(self, zones: Iterable[tuple[str, MultiPolygon]]) -> None:
        self.areas = tuple(Area.of(name, polygons) for name, polygons in zones)

    def zone(self, lat: Any, lon: Any) -> str:
        """The name of the zone containing the point, or ``OutsideTerritory("no_zone")``."""
        flat, flon = coordinates(lat, lon)
        for area in self.areas:
            if area.contains(flon, flat):
                return area.name
        raise OutsideTerritory(NO_ZONE)


@dataclass(frozen=True, slots=True)
class Territory:
    """The contract's territory; points outside it are refused by spatial dimensions."""

    area: Area

    @classmethod
    def from_bbox(cls, bbox: Sequence[float]) -> Territory:
        """A territory from ``[min_lon, min_lat, max_lon, max_lat]``."""
        west, south, east, north = (float(v) for v in bbox)
        ring = ((west, south), (east, south), (east, north), (west, north), (west, south))
        return cls(Area.of("territory", [[ring]]))

    def check(self, lat: float, lon: float) -> None:
        """Raise ``OutsideTerritory("outside_territory")`` for a point outside."""
        if not self.area.contains(lon, lat):
            raise OutsideTerritory(OUTSIDE_TERRITORY)

    def ref_lat(self) -> float:
        """Mid latitude of the bounding box (the grid's reference latitude)."""
        return (self.area.bbox[1] + self.area.bbox[3]) / 2


def time_bucket(event_time_ms: int, bucket_ms: int) -> int:
    """Floor an event time to the start of its bucket (works for negative times too)."""
    return event_time_ms - event_time_ms % bucket_ms


def round_coordinate(value: Any, decimals: int) -> float | None:
    """Python's ``round`` of the float value (half-even on the binary value); None stays None."""
    if value is None:
        return None
    return round(float(value), decimals)
