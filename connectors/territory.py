"""Is a point inside a contract's territory? ``contracts.geometry.Region.contains``, no other.

The aggregation (``policies.generalise.Territory``) asks the very same function, so an event
accepted here is never refused later as ``outside_territory``, nor the reverse. The region's
bounding-box prefilter keeps the exact polygon test off the common path; a ``bbox`` territory
needs nothing more than the box itself (its edges included).
"""

from __future__ import annotations

from contracts.geometry import Region
from contracts.model import Territory


class TerritoryTest:
    """Point-in-territory for one contract, with the region built once."""

    def __init__(self, territory: Territory) -> None:
        self.region = Region.of(territory.polygons)

    def contains(self, lon: float, lat: float) -> bool:
        """True when ``(lon, lat)`` lies inside the territory (box edges included)."""
        return self.region.contains(lon, lat)
