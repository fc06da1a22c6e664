"""The territory check at ingest and the one at aggregation give the same answer, everywhere.

Ingest (``connectors.territory.TerritoryTest``) rejects an event outside the territory; the
aggregation (a spatial dimension of ``policies.spec.view_spec``) refuses to place it. If the
two disagreed on a point, an accepted event could be dropped as ``outside_territory`` by the
worker (or the reverse). Boundary points are where implementations of point-in-polygon
differ, so they are tested one by one: vertices, points on edges, points in holes.
"""

from __future__ import annotations

import functools
import itertools
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from connectors.territory import TerritoryTest
from contracts import Contract, examples_dir, load_contracts, parse_contract
from contracts.copies import example_data
from policies.base import OutsideTerritory
from policies.generalise import OUTSIDE_TERRITORY
from policies.spec import DimensionSpec, view_spec

pytestmark = pytest.mark.unit

NOW = datetime(2026, 6, 1, tzinfo=UTC)
# Around Bordeaux, (lon, lat): a slanted outer ring with a diamond hole, and a square island
# with a square hole. Slanted edges are where two formulas of the ray test round differently.
HOLED = [
    [
        [-0.80, 44.76],
        [-0.47, 44.76],
        [-0.43, 44.84],
        [-0.47, 44.94],
        [-0.70, 44.96],
        [-0.80, 44.90],
        [-0.80, 44.76],
    ],
    [[-0.62, 44.80], [-0.55, 44.85], [-0.62, 44.90], [-0.69, 44.85], [-0.62, 44.80]],
]
ISLAND = [
    [[-0.30, 44.70], [-0.20, 44.70], [-0.20, 44.80], [-0.30, 44.80], [-0.30, 44.70]],
    [[-0.27, 44.73], [-0.23, 44.73], [-0.23, 44.77], [-0.27, 44.77], [-0.27, 44.73]],
]
EDGE_SHARES = (0.5, 1 / 3, 0.25, 0.1, 0.7, 0.9)


@functools.cache
def contracts() -> dict[str, Contract]:
    """The examples (two bbox territories, one polygon) and a multipolygon with holes."""
    data = example_data("navigation")
    data["id"] = "holed-territory"
    data["territory"] = {"polygon": {"type": "MultiPolygon", "coordinates": [HOLED, ISLAND]}}
    holed = parse_contract(data, base_dir=examples_dir(), now=NOW)
    return {c.id: c for c in [*load_contracts([examples_dir()], now=NOW), holed]}


@functools.cache
def spatial_dimensions(contract_id: str) -> list[DimensionSpec]:
    """Every dimension of every view that places a point (h3, grid, zones)."""
    contract = contracts()[contract_id]
    found = []
    for view in contract.views:
        spec = view_spec(contract, view.name)
        found += [d for d in spec.dimensions if len(d.reads) == 2]
    assert found, contract_id
    return found


@functools.cache
def ingest_check(contract_id: str) -> TerritoryTest:
    return TerritoryTest(contracts()[contract_id].territory)


def placed(dimension: DimensionSpec, lat: Any, lon: Any) -> bool:
    """Does the aggregation accept the point as inside the territory?"""
    lat_field, lon_field = dimension.reads
    try:
        dimension.locate({lat_field: lat, lon_field: lon})
    except OutsideTerritory as exc:
        return exc.reason != OUTSIDE_TERRITORY  # e.g. no_zone: inside, but in no zone
    return True


def assert_agree(contract_id: str, lat: float, lon: float) -> None:
    ingest = ingest_check(contract_id).contains(lon, lat)
    for dimension in spatial_dimensions(contract_id):
        # floats take the aggregation's fast path; strings go through coordinate validation
        assert placed(dimension, lat, lon) == ingest, (contract_id, dimension.name, lat, lon)
        assert placed(dimension, repr(lat), repr(lon)) == ingest, (contract_id, lat, lon)


def boundary_points(contract: Contract) -> Iterator[tuple[float, float]]:
    """(lat, lon) of every vertex, points along every edge, and the middle of every hole."""
    for polygon in contract.territory.polygons:
        for ring in polygon:
            for (x1, y1), (x2, y2) in itertools.pairwise(ring):
                yield y1, x1
                for share in EDGE_SHARES:
                    lat, lon = y1 + share * (y2 - y1), x1 + share * (x2 - x1)
                    yield lat, lon
                    yield round(lat, 6), round(lon, 6)  # as a GPS fix would arrive
        for hole in polygon[1:]:
            xs, ys = [x for x, _ in hole[:-1]], [y for _, y in hole[:-1]]
            yield sum(ys) / len(ys), sum(xs) / len(xs)


@pytest.mark.parametrize(
    "contract_id", ["lyon-micromobility", "bordeaux-navigation", "paris-str", "holed-territory"]
)
def test_ingest_and_aggregation_agree_on_boundary_points(contract_id: str) -> None:
    points = list(boundary_points(contracts()[contract_id]))
    for lat, lon in points:
        assert_agree(contract_id, lat, lon)
    assert len(points) >= 4 * (1 + 2 * len(EDGE_SHARES))


def test_the_midpoint_of_a_slanted_edge_is_inside_for_both() -> None:
    # On the edge (-0.43, 44.84)–(-0.47, 44.94): the ray test, computed from either end of
    # the edge, rounds to opposite sides of this point.
    assert_agree("bordeaux-navigation", 44.89, -0.45)
    assert ingest_check("bordeaux-navigation").contains(-0.45, 44.89)


def test_holes_are_outside_for_both() -> None:
    ingest = ingest_check("holed-territory")
    [dimension, *_] = spatial_dimensions("holed-territory")
    for lat, lon in [(44.85, -0.62), (44.75, -0.25)]:  # the middle of each hole
        assert not ingest.contains(lon, lat)
        assert not placed(dimension, lat, lon)
    assert ingest.contains(-0.75, 44.85) and placed(dimension, 44.85, -0.75)  # beside a hole


@settings(max_examples=300, deadline=None)
@given(
    contract_id=st.sampled_from(sorted(contracts())),
    share=st.floats(0, 1),
    edge=st.integers(0, 100),
    lat_off=st.floats(-0.3, 0.3),
    lon_off=st.floats(-0.3, 0.3),
    on_edge=st.booleans(),
)
def test_ingest_and_aggregation_agree_on_random_points(
    contract_id: str, share: float, edge: int, lat_off: float, lon_off: float, on_edge: bool
) -> None:
    contract = contracts()[contract_id]
    edges = [
        pair
        for polygon in contract.territory.polygons
        for ring in polygon
        for pair in itertools.pairwise(ring)
    ]
    (x1, y1), (x2, y2) = edges[edge % len(edges)]
    lat, lon = y1 + share * (y2 - y1), x1 + share * (x2 - x1)
    if not on_edge:  # a point anywhere around the territory's edge
        lat, lon = lat + lat_off, lon + lon_off
    assert_agree(contract_id, lat, lon)
