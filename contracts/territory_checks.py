"""Checks of where a contract applies: the territory's box, and zones that fall inside it.

A latitude/longitude swap is the likeliest slip in hand-written coordinates (GeoJSON and the
bbox are ``lon, lat``; most maps and GPS read ``lat, lon``), so each message says when the
swapped reading would be right. Messages name the rule and the fix, never the coordinates.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime

from contracts.errors import Issue
from contracts.geometry import Region
from contracts.model import Contract, ZonesDimension

BBOX_ORDER = "write [min_lon, min_lat, max_lon, max_lat] (GeoJSON order)"
SWAPPED_HINT = f"latitude and longitude look swapped: {BBOX_ORDER}"
Box = tuple[float, float, float, float]


def check_territory(contract: Contract, now: datetime) -> Iterator[Issue]:
    """A bbox is [min_lon, min_lat, max_lon, max_lat] with min < max, within WGS 84 ranges."""
    bbox = contract.territory.bbox
    if bbox is None:
        return  # polygons are checked when the resolver reads them
    west, south, east, north = bbox
    swapped = not _box_problems((south, west, north, east))
    for problem in _box_problems((west, south, east, north)):
        yield Issue("territory.bbox", f"{problem}; {SWAPPED_HINT}" if swapped else problem)


def _box_problems(box: Box) -> list[str]:
    west, south, east, north = box
    problems = []
    if not all(-180.0 <= lon <= 180.0 for lon in (west, east)):
        problems.append("longitudes must be within [-180, 180]")
    if not all(-90.0 <= lat <= 90.0 for lat in (south, north)):
        problems.append("latitudes must be within [-90, 90]")
    if west >= east or south >= north:
        problems.append("must be [min_lon, min_lat, max_lon, max_lat] with min < max")
    return problems


def check_zones_in_territory(contract: Contract, now: datetime) -> Iterator[Issue]:
    """A zones file of which no zone meets the territory would publish nothing, ever."""
    territory = _territory_box(contract)
    if territory is None:
        return
    for i, view in enumerate(contract.views):
        for j, dim in enumerate(view.group_by):
            zones = _zone_boxes(dim)
            if zones and not any(_meets(zone, territory) for zone in zones):
                yield _zones_outside(contract, f"views[{i}].group_by[{j}]", zones, territory)


def _zones_outside(contract: Contract, where: str, zones: list[Box], territory: Box) -> Issue:
    if contract.territory.bbox is not None and any(_meets(z, _swap(territory)) for z in zones):
        message = (
            f"no zone of {where} lies inside it, but they would with latitude and longitude"
            f" swapped: {BBOX_ORDER}, or fix the zones file if its points are [lat, lon]"
        )
        return Issue("territory.bbox", message)
    message = "no zone of the file lies inside the territory"
    if any(_meets(_swap(zone), territory) for zone in zones):
        message += "; its points look like [lat, lon]: GeoJSON points are [lon, lat]"
    return Issue(f"{where}.file", message)


def _territory_box(contract: Contract) -> Box | None:
    try:
        polygons = contract.territory.polygons
    except RuntimeError:
        return None  # the polygon did not load; the resolver said why
    if contract.territory.bbox is not None and _box_problems(contract.territory.bbox):
        return None  # a broken bbox is reported on its own
    return Region.of(polygons).bbox


def _zone_boxes(dim: object) -> list[Box]:
    if not isinstance(dim, ZonesDimension):
        return []
    try:
        return [zone.region.bbox for zone in dim.zones]
    except RuntimeError:
        return []  # the file did not load; the resolver said why


def _meets(a: Box, b: Box) -> bool:
    return a[0] <= b[2] and b[0] <= a[2] and a[1] <= b[3] and b[1] <= a[3]


def _swap(box: Box) -> Box:
    west, south, east, north = box
    return (south, west, north, east)
