"""Generalisation primitives: known answers and reasons for points that cannot be placed."""

from __future__ import annotations

import pytest

from policies.base import OutsideTerritory
from policies.generalise import (
    INVALID_LOCATION,
    MISSING_LOCATION,
    NO_ZONE,
    OUTSIDE_TERRITORY,
    Area,
    Grid,
    Territory,
    ZoneIndex,
    geojson_polygons,
    h3_cell,
    round_coordinate,
    time_bucket,
)
from policies.minimise import Minimiser
from policies.spec import grid_dimension, h3_dimension

pytestmark = pytest.mark.unit


@pytest.mark.parametrize(
    ("lat", "lon", "res", "cell"),
    [
        (45.7640, 4.8357, 8, "881f902093fffff"),  # Lyon, place Bellecour
        (48.8584, 2.2945, 9, "891fb46741bffff"),  # Paris, Eiffel tower
    ],
)
def test_h3_known_cells(lat: float, lon: float, res: int, cell: str) -> None:
    assert h3_cell(lat, lon, res) == cell


@pytest.mark.parametrize(
    ("lat", "lon", "reason"),
    [
        (None, 4.8, MISSING_LOCATION),
        (45.0, None, MISSING_LOCATION),
        ("north", 4.8, INVALID_LOCATION),
        (91.0, 4.8, INVALID_LOCATION),
    ],
)
def test_unplaceable_points_say_why(lat: object, lon: object, reason: str) -> None:
    with pytest.raises(OutsideTerritory) as caught:
        h3_cell(lat, lon, 8)
    assert caught.value.reason == reason


def test_grid_known_cell_and_label() -> None:
    # x = R·rad(4.8357)·cos(rad(45.75)) ≈ 375 206 m, y = R·rad(45.764) ≈ 5 088 731 m.
    assert Grid(500, 45.75).cell(45.7640, 4.8357) == "g500:750:10177"
    assert Grid(250.5, 45.75).cell(45.7640, 4.8357).startswith("g250.5:")


def test_grid_neighbours_are_size_apart() -> None:
    grid = Grid(1000, 45.0)
    a = grid.cell(45.0, 4.80).split(":")
    b = grid.cell(45.0 + 1000 / 111_195, 4.80).split(":")  # ~1 km north
    assert int(b[2]) - int(a[2]) == 1 and a[1] == b[1]


SQUARE = [
    [[0.0, 0.0], [10.0, 0.0], [10.0, 10.0], [0.0, 10.0], [0.0, 0.0]],
    [[4.0, 4.0], [6.0, 4.0], [6.0, 6.0], [4.0, 6.0], [4.0, 4.0]],
]  # with a hole


def test_zones_point_in_polygon_with_holes_and_multipolygons() -> None:
    index = ZoneIndex(
        [
            ("holed", geojson_polygons({"type": "Polygon", "coordinates": SQUARE})),
            (
                "islands",
                geojson_polygons(
                    {
                        "type": "MultiPolygon",
                        "coordinates": [
                            [[[20, 0], [21, 0], [21, 1], [20, 1], [20, 0]]],
                            [[[30, 0], [31, 0], [31, 1], [30, 1], [30, 0]]],
                        ],
                    }
                ),
            ),
            ("hole-filler", [[[(4.0, 4.0), (6.0, 4.0), (6.0, 6.0), (4.0, 6.0), (4.0, 4.0)]]]),
        ]
    )
    assert index.zone(1.0, 1.0) == "holed"  # lat, lon
    assert index.zone(5.0, 5.0) == "hole-filler"
    assert index.zone(0.5, 30.5) == "islands"
    with pytest.raises(OutsideTerritory) as caught:
        index.zone(0.5, 25.0)
    assert caught.value.reason == NO_ZONE


def test_territory_check_in_spatial_dimensions() -> None:
    territory = Territory.from_bbox([4.77, 45.70, 4.92, 45.81])
    locate = h3_dimension("cell", "lat", "lon", 8, territory).locate
    assert locate({"lat": 45.7640, "lon": 4.8357}) == "881f902093fffff"
    assert locate({"lat": 45.764, "lon": 4.8357}) == locate({"lat": "45.764", "lon": 4.8357})
    with pytest.raises(OutsideTerritory) as caught:
        locate({"lat": 48.85, "lon": 2.29})
    assert caught.value.reason == OUTSIDE_TERRITORY
    grid = grid_dimension("cell", "lat", "lon", 500, territory).locate
    assert grid({"lat": 45.7640, "lon": 4.8357}).startswith("g500:")
    with pytest.raises(OutsideTerritory):
        grid({"lat": 45.0, "lon": 4.8357})


def test_polygon_territory_uses_ray_casting() -> None:
    triangle = Territory(Area.of("t", [[[(0.0, 0.0), (10.0, 0.0), (0.0, 10.0), (0.0, 0.0)]]]))
    locate = h3_dimension("cell", "lat", "lon", 5, triangle).locate
    assert locate({"lat": 1.0, "lon": 1.0})
    with pytest.raises(OutsideTerritory):
        locate({"lat": 9.0, "lon": 9.0})  # inside the bbox, outside the triangle


@pytest.mark.parametrize(
    ("t", "bucket", "start"),
    [
        (0, 900_000, 0),
        (899_999, 900_000, 0),
        (900_000, 900_000, 900_000),
        (1_767_226_512_345, 900_000, 1_767_225_600_000 + 900_000),
        (-1, 1000, -1000),
    ],
)
def test_time_buckets(t: int, bucket: int, start: int) -> None:
    assert time_bucket(t, bucket) == start


def test_round_coordinate() -> None:
    assert round_coordinate(45.76449, 3) == 45.764
    assert round_coordinate(4.83571, 2) == 4.84
    assert round_coordinate(None, 2) is None


def test_minimiser_is_default_deny() -> None:
    m = Minimiser.of(["a", None, "b"])
    assert m.project({"a": 1, "b": 2, "secret": 3}) == {"a": 1, "b": 2}
    assert not m.allows("secret")
