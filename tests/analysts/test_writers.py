"""The CSV, Parquet and GeoJSON writers on hand-built rows: columns, metadata, geometry."""

from __future__ import annotations

import csv
import json
import math
from dataclasses import replace
from pathlib import Path
from typing import Any

import h3
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from broker.analysts.export import ExportError, export
from broker.analysts.export.geojson import Places, feature_collection, signed_area
from broker.analysts.export.parquet import read_metadata
from broker.analysts.export.table import columns, metadata, quantile_label
from broker.analysts.subscribe import print_releases
from broker.kafka.public_reader import (
    LeftOut,
    ViewContents,
    fill_released,
    iso_utc,
    parse_instant,
)
from contracts.geometry import multipolygon_contains
from contracts.policy_hash import policy_hash, short_policy_hash
from policies.generalise import Grid
from tests.analysts.rows import LYON, QUARTER, T0, availability, group, load_example, report

pytestmark = pytest.mark.unit


@pytest.fixture
def mobility(tmp_path: Path) -> Any:
    return load_example(tmp_path, "micromobility")


def with_quantiles(data: dict[str, Any]) -> None:
    """Navigation jams with a quantiles measure and a grid dimension instead of H3."""
    jams = data["views"][0]
    jams["measures"].append(
        {"type": "quantiles", "name": "delay_q", "field": "delay_s", "q": [0.5, 0.9, 0.999]}
    )
    jams["group_by"] = [
        {"type": "grid", "name": "square", "lat": "lat", "lon": "lon", "size_m": 500}
    ]


def test_quantile_columns_have_one_column_per_q(tmp_path: Path) -> None:
    contract = load_example(tmp_path, "navigation", with_quantiles)
    names = [c.name for c in columns(contract.view("jams"))]
    assert names == [
        "window_start",
        "window_end",
        "square",
        "reports",
        "mean_delay_s",
        "mean_length_m",
        "reporters",
        "delay_q_p50",
        "delay_q_p90",
        "delay_q_p99.9",
    ]
    assert quantile_label(0.25) == "p25"


def test_times_parse_as_ms_or_iso_and_print_as_utc() -> None:
    assert parse_instant("2026-03-01T08:00:00Z") == T0
    assert parse_instant("2026-03-01T09:00:00+01:00") == T0
    assert parse_instant("2026-03-01T08:00") == T0  # naive means UTC
    assert parse_instant(str(T0)) == T0
    assert iso_utc(T0) == "2026-03-01T08:00:00Z"
    assert iso_utc(T0 + 5) == "2026-03-01T08:00:00.005Z"


def test_csv_has_the_documented_columns_and_a_metadata_sidecar(
    mobility: Any, tmp_path: Path
) -> None:
    contents = availability(mobility)
    out = tmp_path / "availability.csv"
    written = export(contents, out, "csv", include_reports=True)
    assert written == [
        out,
        tmp_path / "availability.reports.csv",
        tmp_path / "availability.csv.meta.json",
    ]
    with out.open(encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    assert list(rows[0]) == ["window_start", "window_end", "cell", "events", "vehicles"]
    assert rows[0] == {
        "window_start": "2026-03-01T08:00:00Z",
        "window_end": "2026-03-01T08:15:00Z",
        "cell": contents.groups[0].group["cell"],
        "events": "14",
        "vehicles": "12",
    }
    assert len(rows) == 3
    with written[1].open(encoding="utf-8") as handle:
        reports = list(csv.DictReader(handle))
    assert reports[0]["groups_suppressed"] == "3" and reports[0]["k"] == "10"
    meta = json.loads(written[2].read_text(encoding="utf-8"))
    assert meta["licence"] == "ODbL-1.0"
    assert meta["attribution"].startswith("ScootCo SAS")
    assert meta["policy_hash"] == policy_hash(mobility)
    assert meta["published_under"] == [{"contract_version": "1", "policy_hash": "abcdef0123456789"}]
    assert (meta["contract"], meta["view"], meta["k"], meta["epsilon"]) == (
        mobility.id,
        "availability",
        10,
        None,
    )
    assert [c["name"] for c in meta["columns"]] == list(rows[0])
    assert all(c["description"] for c in meta["columns"])
    assert meta["generated_at"].endswith("Z") and meta["windows"] == 2 and meta["rows"] == 3


def test_csv_leaves_a_missing_mean_empty(tmp_path: Path) -> None:
    contract = load_example(tmp_path, "navigation", with_quantiles)
    view = contract.view("jams")
    label = Grid(500, 44.86).cell(44.84, -0.58)
    row = group(
        T0,
        {"square": label},
        {
            "reports": 5,
            "mean_delay_s": None,
            "mean_length_m": 120.5,
            "reporters": 4,
            "delay_q": [10.0, 30.0, 90.0],
        },
    )
    out = tmp_path / "jams.csv"
    export(ViewContents(contract, view, [row], [report(T0, 1, 0, k=3)]), out, "csv")
    with out.open(encoding="utf-8") as handle:
        (line,) = list(csv.DictReader(handle))
    assert line["mean_delay_s"] == "" and line["mean_length_m"] == "120.5"
    assert (line["delay_q_p50"], line["delay_q_p99.9"]) == ("10.0", "90.0")


def test_parquet_has_typed_columns_and_key_value_metadata(mobility: Any, tmp_path: Path) -> None:
    contents = availability(mobility)
    out = tmp_path / "availability.parquet"
    written = export(contents, out, "parquet", include_reports=True)
    assert written == [out, tmp_path / "availability.reports.parquet"]
    table = pq.read_table(out)
    assert table.column_names == ["window_start", "window_end", "cell", "events", "vehicles"]
    assert table.schema.field("window_start").type == pa.timestamp("ms", tz="UTC")
    assert table.schema.field("events").type == pa.int64()
    assert table.schema.field("cell").metadata[b"description"].startswith(b"H3 cell")
    rows = table.to_pylist()
    assert [int(r["window_start"].timestamp() * 1000) for r in rows] == [T0, T0, T0 + QUARTER]
    assert [r["events"] for r in rows] == [14, 11, 30]
    kv = table.schema.metadata
    assert kv[b"licence"] == b"ODbL-1.0" and kv[b"contract"] == mobility.id.encode()
    assert read_metadata(out)["policy_hash"] == policy_hash(mobility)
    reports = pq.read_table(written[1]).to_pylist()
    assert [r["groups_suppressed"] for r in reports] == [3, 0]


def test_unknown_format_is_refused(mobility: Any, tmp_path: Path) -> None:
    with pytest.raises(ExportError, match="unknown format"):
        export(availability(mobility), tmp_path / "x.xlsx", "xlsx")


def assert_valid_ring(ring: list[list[float]], bbox: tuple[float, ...], *, outer: bool) -> None:
    west, south, east, north = bbox
    assert len(ring) >= 4 and ring[0] == ring[-1], "rings are closed"
    assert all(
        west - 0.05 <= lon <= east + 0.05 and south - 0.05 <= lat <= north + 0.05
        for lon, lat in ring
    ), "coordinates are [lon, lat] inside the territory"
    assert (signed_area(ring) > 0) == outer, "outer rings run counter-clockwise"


def test_h3_cells_become_closed_lon_lat_hexagons(mobility: Any) -> None:
    contents = availability(mobility)
    document = feature_collection(contents, metadata(contents), include_reports=True)
    assert document["type"] == "FeatureCollection"
    assert document["metadata"]["licence"] == "ODbL-1.0"
    assert document["metadata"]["attribution"] == mobility.attribution
    assert len(document["metadata"]["reports"]) == 2
    bbox = mobility.territory.bbox
    for feature, source, (lat, lon) in zip(
        document["features"], contents.groups, LYON, strict=False
    ):
        geometry = feature["geometry"]
        assert geometry["type"] == "Polygon" and len(geometry["coordinates"]) == 1
        ring = geometry["coordinates"][0]
        assert len(ring) == 7  # six vertices, closed
        assert_valid_ring(ring, bbox, outer=True)
        polygon = (tuple((x, y) for x, y in ring),)
        assert multipolygon_contains((polygon,), lon, lat)  # the point that made the cell
        props = feature["properties"]
        assert props["window_start"] == iso_utc(source.window_start)
        assert props["events"] == source.measures["events"]
        assert props["cell"] == h3.latlng_to_cell(lat, lon, 8)
    json.dumps(document, allow_nan=False)


def test_origin_destination_becomes_a_line_between_cell_centres(mobility: Any) -> None:
    view = mobility.view("origin_destination")
    origin, destination = (h3.latlng_to_cell(lat, lon, 7) for lat, lon in LYON[:2])
    row = group(
        T0,
        {"origin_cell": origin, "destination_cell": destination},
        {"trips": 12, "vehicles": 11, "mean_duration_s": 640.5},
        window=3_600_000,
    )
    contents = ViewContents(mobility, view, [row], [])
    (feature,) = feature_collection(contents, metadata(contents))["features"]
    line = feature["geometry"]
    assert line["type"] == "LineString"
    start, end = line["coordinates"]
    lat, lon = h3.cell_to_latlng(origin)
    assert start == pytest.approx([lon, lat], abs=1e-6)
    lat, lon = h3.cell_to_latlng(destination)
    assert end == pytest.approx([lon, lat], abs=1e-6)
    assert feature["properties"]["mean_duration_s"] == 640.5


def test_zones_become_the_zone_polygon(tmp_path: Path) -> None:
    rentals = load_example(tmp_path, "rentals")
    view = rentals.view("nights_by_district")
    zones = {z.value: z for z in view.zones["district"]}
    row = group(
        T0,
        {"district": "south-west"},
        {"nights": 40.0, "guests": 80.0, "listings": 6, "listing_urls": 6, "stays": 9},
    )
    contents = ViewContents(rentals, view, [row, group(T0, {"district": None}, {})], [])
    features = feature_collection(contents, metadata(contents))["features"]
    polygon = features[0]["geometry"]
    assert polygon["type"] == "Polygon"
    ring = polygon["coordinates"][0]
    assert_valid_ring(ring, rentals.territory.bbox, outer=True)
    assert {tuple(p) for p in ring} == {tuple(p) for p in zones["south-west"].polygons[0][0]}
    assert features[1]["geometry"] is None  # a null dimension value has no place


def test_grid_labels_become_the_square_holding_the_point(tmp_path: Path) -> None:
    contract = load_example(tmp_path, "navigation", with_quantiles)
    places = Places(contract, contract.view("jams"))
    polygons = contract.territory.polygons
    ys = [y for _, y in polygons[0][0]]
    grid = Grid(500, (min(ys) + max(ys)) / 2)
    for lat, lon in [(44.84, -0.58), (44.80, -0.70), (44.9, -0.5)]:
        geometry = places.geometry({"square": grid.cell(lat, lon)})
        assert geometry is not None
        ring = geometry["coordinates"][0]
        assert_valid_ring(ring, (-0.80, 44.76, -0.43, 44.96), outer=True)
        assert multipolygon_contains(((tuple((x, y) for x, y in ring),),), lon, lat)
        width_m = (
            (ring[1][0] - ring[0][0])
            * math.pi
            / 180
            * 6_371_008.8
            * math.cos(math.radians(grid.ref_lat))
        )
        assert abs(abs(width_m) - 500) < 1


def test_geojson_file_is_strict_json(mobility: Any, tmp_path: Path) -> None:
    out = tmp_path / "availability.geojson"
    assert export(availability(mobility), out, "geojson") == [out]
    document = json.loads(out.read_text(encoding="utf-8"))
    assert len(document["features"]) == 3
    assert "reports" not in document["metadata"]


def test_subscribe_table_lines_up_groups_and_reports(mobility: Any) -> None:
    contents = availability(mobility)
    lines: list[str] = []
    rows = [
        *contents.groups_of((T0, T0 + QUARTER)),
        contents.reports[0],
        *contents.groups_of((T0 + QUARTER, T0 + 2 * QUARTER)),
        contents.reports[1],
    ]
    assert print_releases(iter(rows), contents.view, lines.append, max_windows=1) == 1
    assert lines[0].split() == ["window", "cell", "events", "vehicles"]
    assert lines[1].split() == [
        "2026-03-01T08:00:00Z/2026-03-01T08:15:00Z",
        contents.groups[0].group["cell"],
        "14",
        "12",
    ]
    assert lines[3].strip() == "k=10: 2 groups published, 3 suppressed"
    assert lines[3].index("k=") == lines[1].index(contents.groups[0].group["cell"])
    assert len(lines) == 4  # stopped after the first window's report
    noisy = report(T0, 4, 1, k=3, epsilon=1.0)
    assert noisy.summary() == "k=3: 4 groups published, 1 suppressed, ε=1"


def test_only_windows_released_under_the_contracts_policy_are_kept(mobility: Any) -> None:
    ours = {"respublica.policy_hash": short_policy_hash(mobility)}
    rows = availability(mobility)
    kept = [replace(g, headers=ours) for g in rows.groups]
    reports = [replace(r, headers=ours) for r in rows.reports]
    stale = replace(reports[1], headers={"respublica.policy_hash": "0123456789abcdef"})
    lone = replace(kept[0], window_start=T0 + 8 * QUARTER, window_end=T0 + 9 * QUARTER)
    contents = ViewContents(mobility, mobility.view("availability"))
    # Window 2's report is of another policy: its group goes too, as a window without report.
    fill_released(contents, [*kept, reports[0], stale, lone])
    assert {id(g) for g in contents.groups} == {id(g) for g in kept[:2]}
    assert contents.reports == [reports[0]]
    assert contents.left_out == LeftOut(windows_without_report=2, foreign_policy_hash=1)
    assert metadata(contents)["left_out"] == {"windows_without_report": 2, "foreign_policy_hash": 1}


@pytest.mark.parametrize(
    "hostile",
    [
        '=HYPERLINK("http://evil.example","x")',
        "+cmd|' /C calc'!A0",
        "-2+3",
        "@SUM(A1)",
        "\tx",
        "\rx",
    ],
)
def test_csv_neutralises_cells_a_spreadsheet_would_run(tmp_path: Path, hostile: str) -> None:
    contract = load_example(tmp_path, "navigation", with_quantiles)
    view = contract.view("jams")
    measures = {
        "reports": 5,
        "mean_delay_s": -3.5,  # a number stays a number, even negative
        "mean_length_m": 120.5,
        "reporters": 4,
        "delay_q": [10.0, 30.0, 90.0],
    }
    rows = [group(T0, {"square": hostile}, measures), group(T0, {"square": "plain"}, measures)]
    out = tmp_path / "jams.csv"
    export(ViewContents(contract, view, rows, [report(T0, 2, 0, k=3)]), out, "csv")
    with out.open(encoding="utf-8", newline="") as handle:
        lines = list(csv.DictReader(handle))
    assert sorted(line["square"] for line in lines) == sorted(["'" + hostile, "plain"])
    assert {line["mean_delay_s"] for line in lines} == {"-3.5"}
