"""Export files that explain themselves (issue 21, city analyst): what a missing group means,
column descriptions true for exact and for noised views, and origin = destination features
that GeoJSON tools can draw."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import h3
import pytest

from broker.analysts.export import export
from broker.analysts.export.geojson import feature_collection
from broker.analysts.export.parquet import read_metadata
from broker.analysts.export.table import metadata
from broker.kafka.public_reader import ViewContents
from tests.analysts.rows import LYON, QUARTER, T0, availability, group, load_example, report

pytestmark = pytest.mark.unit


def noised_availability(data: dict[str, Any]) -> None:
    """The availability view (a count and a distinct_subjects) with differential privacy."""
    view = data["views"][0]
    view["noise"] = {
        "mechanism": "geometric",
        "epsilon": 1.0,
        "budget": 288.0,  # 96 windows a day x (2 noised measures + 1 release decision)
        "period": "P1D",
        "max_groups": 1,
        "max_contributions": 2,
    }


def described(meta: dict[str, Any]) -> dict[str, str]:
    return {c["name"]: c["description"] for c in meta["columns"]}


def test_exact_view_says_a_missing_group_is_below_k_or_absent_never_zero(tmp_path: Path) -> None:
    contract = load_example(tmp_path, "micromobility")
    meta = metadata(availability(contract))
    missing = meta["missing_groups"]
    assert "fewer than k = 10 distinct subjects, or none" in missing
    assert "not zero" in missing
    assert "groups_suppressed" in missing  # where the count of suppressed groups is
    columns = described(meta)
    assert columns["events"].startswith("number of events in the group (exact)")
    assert "at least k = 10" in columns["vehicles"]
    assert "at most `events`" in columns["vehicles"]
    assert "noise" not in json.dumps(meta["columns"])


def test_noised_view_columns_never_promise_what_noise_breaks(tmp_path: Path) -> None:
    contract = load_example(tmp_path, "micromobility", noised_availability)
    view = contract.view("availability")
    # A release where noise made the subject count exceed the event count: a true value.
    cell = h3.latlng_to_cell(*LYON[0], 8)
    contents = ViewContents(
        contract,
        view,
        [group(T0, {"cell": cell}, {"events": 11, "vehicles": 13})],
        [report(T0, 1, 0, epsilon=3.0)],
    )
    meta = metadata(contents)
    columns = described(meta)
    vehicles, events = columns["vehicles"], columns["events"]
    assert "not exact" in vehicles and "not exact" in events
    assert "at least k" not in vehicles.split(";")[0]  # the value itself is not bounded by k
    assert "may be below k = 10" in vehicles
    assert "may exceed `events`" in vehicles
    assert "at most 2 event(s)" in events and "at most 1 group(s)" in events
    assert "ε = 1" in vehicles and "geometric" in vehicles
    missing = meta["missing_groups"]
    assert "fewer than k = 10 distinct subjects, or none" in missing
    assert f"k + margin = {10 + view.noise.selection_margin}" in missing  # type: ignore[union-attr]
    assert "not zero" in missing
    assert "not published" in missing  # the count of suppressed groups of a noised view


@pytest.mark.parametrize("fmt", ["csv", "parquet", "geojson"])
def test_every_format_carries_the_missing_groups_sentence(tmp_path: Path, fmt: str) -> None:
    contract = load_example(tmp_path, "micromobility")
    out = tmp_path / f"a.{fmt}"
    export(availability(contract), out, fmt)
    if fmt == "csv":
        meta = json.loads((tmp_path / "a.csv.meta.json").read_text(encoding="utf-8"))
    elif fmt == "parquet":
        meta = read_metadata(out)
    else:
        meta = json.loads(out.read_text(encoding="utf-8"))["metadata"]
    assert "fewer than k = 10 distinct subjects, or none" in meta["missing_groups"]


def test_origin_equal_to_destination_is_a_point_not_a_zero_length_line(tmp_path: Path) -> None:
    contract = load_example(tmp_path, "micromobility")
    view = contract.view("origin_destination")
    a, b = (h3.latlng_to_cell(lat, lon, 7) for lat, lon in LYON[:2])
    assert a != b
    measures = {"trips": 12, "vehicles": 11, "mean_duration_s": 300.0}
    contents = ViewContents(
        contract,
        view,
        [
            group(T0, {"origin_cell": a, "destination_cell": a}, measures, window=4 * QUARTER),
            group(T0, {"origin_cell": a, "destination_cell": b}, measures, window=4 * QUARTER),
        ],
        [report(T0, 2, 0, window=4 * QUARTER)],
    )
    same, other = feature_collection(contents, {})["features"]
    lat, lon = h3.cell_to_latlng(a)
    assert same["geometry"] == {"type": "Point", "coordinates": [round(lon, 7), round(lat, 7)]}
    assert same["properties"]["origin_cell"] == same["properties"]["destination_cell"] == a
    assert other["geometry"]["type"] == "LineString"
    start, end = other["geometry"]["coordinates"]
    assert start != end
