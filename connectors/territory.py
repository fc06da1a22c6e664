"""Is a point inside a contract's territory? A bounding-box prefilter, then point-in-polygon.

Most events of a working provider are inside, so the exact polygon test (even-odd rule from
``contracts.geometry``) runs only for points inside the bounding box; a ``bbox`` territory
needs nothing more than the box itself.
"""

from __future__ import annotations

from contracts.geometry import MultiPolygon, multipolygon_contains
from contracts.model import Territory


class TerritoryTest:
    """Point-in-territory for one contract, with the bounding box precomputed."""

    def __init__(self, territory: Territory) -> None:
        self._polygons: MultiPolygon = territory.polygons
        self._exact_box = territory.bbox is not None
        points = [p for polygon in self._polygons for ring in polygon for p in ring]
        self.west = min(p[0] for p in points)
        self.east = max(p[0] for p in points)
        self.south = min(p[1] for p in points)
        self.north = max(p[1] for p in points)

    def contains(self, lon: float, lat: float) -> bool:
        """True when ``(lon, lat)`` lies inside the territory (box edges included)."""
        if not (self.west <= lon <= self.east and self.south <= lat <= self.north):
            return False
        return self._exact_box or multipolygon_contains(self._polygons, lon, lat)
