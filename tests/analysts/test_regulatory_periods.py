"""The regulatory exports on hand-built releases: the month aggregation rules, the MDS Reports
and EU STR files, and the views they refuse."""

from __future__ import annotations

import csv
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from broker.analysts.export import ExportError, RegulatoryOptions, export
from broker.analysts.export.mds_reports import trip_count
from broker.analysts.export.periods import (
    Period,
    aggregate,
    month_periods,
    monthly_or_windows,
    require_months,
)
from broker.kafka.public_reader import PublishedGroup, ViewContents, WindowReport
from tests.analysts.rows import MDS_REPORTS_SPEC_COLUMNS, group, load_example, report

pytestmark = pytest.mark.unit

DAY = 86_400_000
HOUR = 3_600_000
MARCH = int(datetime(2026, 3, 1, tzinfo=UTC).timestamp() * 1000)
APRIL = int(datetime(2026, 4, 1, tzinfo=UTC).timestamp() * 1000)
MONTH = Period(MARCH, APRIL)
DAYS = range(MARCH, APRIL, DAY)


def clear(start: int, published: int = 1) -> WindowReport:
    return report(start, published, 0, window=DAY)


def day(start: int, dims: dict[str, str | None], trips: int) -> PublishedGroup:
    return group(start, dims, {"trips": trips}, window=DAY)


def monthly(
    groups: list[PublishedGroup],
    reports: list[WindowReport],
    *,
    exhaustive: bool = True,
    key_of: dict[str, str] | None = None,
    quiet_before: int | None = None,
) -> Any:
    return aggregate(
        groups,
        reports,
        periods=[MONTH],
        window_ms=DAY,
        key_of=key_of or {"geography_id": "cell"},
        summed=["trips"],
        exhaustive=exhaustive,
        quiet_before=quiet_before,
    )


def test_clear_windows_add_up_and_an_absent_group_is_zero_there() -> None:
    groups = [day(MARCH, {"cell": "a"}, 12), day(MARCH + 5 * DAY, {"cell": "a"}, 30)]
    result = monthly(groups, [clear(s) for s in DAYS])
    assert result.periods == [MONTH]
    assert result.cells[(MONTH, ("a",))] == {"trips": 42.0}


def test_an_opaque_window_hides_an_absent_group_but_not_a_published_one() -> None:
    groups = [
        day(MARCH, {"cell": "a"}, 12),
        day(MARCH + DAY, {"cell": "a"}, 11),
        day(MARCH + DAY, {"cell": "b"}, 20),
    ]
    opaque = report(MARCH, 1, 1, window=DAY)  # day 0 suppressed one group
    result = monthly(groups, [opaque] + [clear(s) for s in DAYS[1:]])
    assert result.cells[(MONTH, ("a",))] == {"trips": 23.0}  # published in the opaque window
    assert result.cells[(MONTH, ("b",))] is None  # absent on day 0: it may be the suppressed one


def test_summing_over_another_dimension_is_unknown_in_any_opaque_window() -> None:
    dims = {"geography_id": "origin"}
    groups = [
        day(MARCH, {"origin": "a", "destination": "x"}, 12),
        day(MARCH, {"origin": "a", "destination": "y"}, 15),
    ]
    all_clear = monthly(groups, [clear(s) for s in DAYS], exhaustive=False, key_of=dims)
    assert all_clear.cells[(MONTH, ("a",))] == {"trips": 27.0}
    reports = [report(MARCH, 2, 1, window=DAY)] + [clear(s) for s in DAYS[1:]]
    opaque = monthly(groups, reports, exhaustive=False, key_of=dims)
    assert opaque.cells[(MONTH, ("a",))] is None  # (a, z) may be the suppressed group


@pytest.mark.parametrize(
    "opaque",
    [
        report(MARCH + DAY, 0, None, window=DAY),  # a noised view does not say
        WindowReport(MARCH + DAY, MARCH + 2 * DAY, 10, 0, 0, "contract_inactive", 0.0, {}),
    ],
)
def test_unknown_suppression_and_withheld_windows_are_opaque(opaque: WindowReport) -> None:
    reports = [clear(s) for s in DAYS if s != MARCH + DAY] + [opaque]
    result = monthly([day(MARCH, {"cell": "a"}, 12)], reports)
    assert result.cells[(MONTH, ("a",))] is None


def test_a_month_with_a_window_not_released_is_left_out() -> None:
    reports = [clear(s) for s in DAYS if s != MARCH + 9 * DAY]
    result = monthly([day(MARCH, {"cell": "a"}, 12)], reports)
    assert result.periods == []
    assert result.incomplete == [MONTH]
    assert result.cells == {}


def test_windows_before_the_first_release_are_quiet_only_when_told() -> None:
    first = MARCH + 10 * DAY
    reports = [clear(s) for s in DAYS if s >= first]
    groups = [day(first, {"cell": "a"}, 12)]
    assert monthly(groups, reports).incomplete == [MONTH]
    result = monthly(groups, reports, quiet_before=first)
    assert result.cells[(MONTH, ("a",))] == {"trips": 12.0}


def test_a_group_outside_every_area_is_no_row() -> None:
    result = monthly([day(MARCH, {"cell": None}, 12)], [clear(s) for s in DAYS])
    assert result.keys == []


def test_months_follow_the_time_zone_and_windows_must_tile_them() -> None:
    paris = ZoneInfo("Europe/Paris")
    months = month_periods(MARCH + DAY, MARCH + 40 * DAY, paris)
    assert [datetime.fromtimestamp(p.start_ms / 1000, tz=paris).day for p in months] == [1, 1]
    assert months[0].start_ms == MARCH - HOUR  # midnight in Paris is 23:00 UTC in winter
    assert months[0].end_ms - months[0].start_ms == 31 * DAY - HOUR  # clocks go forward (29th)
    assert require_months([MARCH, MARCH + HOUR], HOUR, paris) == [
        Period(MARCH - HOUR, APRIL - 2 * HOUR)
    ]
    thirty = 30 * DAY
    periods, is_monthly = monthly_or_windows([MARCH // thirty * thirty], thirty, ZoneInfo("UTC"))
    assert not is_monthly and periods[0].end_ms - periods[0].start_ms == thirty
    with pytest.raises(ExportError, match="do not tile calendar months"):
        require_months([MARCH // thirty * thirty], thirty, ZoneInfo("UTC"))


@pytest.mark.parametrize(
    ("cell", "expected"),
    [(None, -1), ({"trips": 0.0}, -1), ({"trips": 9.0}, -1), ({"trips": 10.0}, 10)],
)
def test_mds_trip_count_redacts_small_zero_and_unknown(
    cell: dict[str, float] | None, expected: int
) -> None:
    assert trip_count(cell, "trips") == expected


def origin_destination(tmp_path: Path) -> ViewContents:
    """One March of daily origin-destination windows (the example view, daily)."""

    def daily(data: dict[str, Any]) -> None:
        od = data["views"][1]
        od["window"] = od["time_bucket"] = "P1D"

    contract = load_example(tmp_path, "micromobility", daily)
    groups = [
        group(MARCH, {"origin_cell": "a", "destination_cell": "b"}, {"trips": 25}, window=DAY),
        group(MARCH, {"origin_cell": "c", "destination_cell": "b"}, {"trips": 5}, window=DAY),
    ]
    reports = [clear(s, published=2) for s in DAYS]
    return ViewContents(contract, contract.view("origin_destination"), groups, reports)


def read_csv(path: Path) -> list[list[str]]:
    with path.open(newline="", encoding="utf-8") as handle:
        return list(csv.reader(handle))


def test_mds_reports_file_has_the_spec_columns_and_rows(tmp_path: Path) -> None:
    out = tmp_path / "reports.csv"
    options = RegulatoryOptions(
        vehicle_type="scooter_standing", provider_id="48415839-3e38-4ba5-a557-e45fb4e6a0a3"
    )
    written = export(origin_destination(tmp_path), out, "mds-reports", regulatory=options)
    assert [p.name for p in written] == ["reports.csv", "reports.csv.meta.json"]
    header, *rows = read_csv(out)
    assert header == MDS_REPORTS_SPEC_COLUMNS
    provider, start, p1m, group_type, vehicle = (
        options.provider_id,
        "2026-03-01",
        "P1M",
        "all_riders",
        "scooter_standing",
    )
    assert rows == [
        [provider, start, p1m, group_type, "a", vehicle, "25", ""],
        [provider, start, p1m, group_type, "c", vehicle, "-1", ""],  # 5 < 10
    ]


def test_mds_reports_refuses_what_it_does_not_fit(tmp_path: Path) -> None:
    contents = origin_destination(tmp_path)
    out = tmp_path / "r.csv"
    with pytest.raises(ExportError, match="no vehicle_type dimension: pass --vehicle-type"):
        export(contents, out, "mds-reports")
    with pytest.raises(ExportError, match="--vehicle-type must be an MDS 2.0 vehicle type"):
        export(contents, out, "mds-reports", regulatory=RegulatoryOptions(vehicle_type="kart"))
    bad_provider = RegulatoryOptions(vehicle_type="bicycle", provider_id="scootco")
    with pytest.raises(ExportError, match="--provider-id must be the provider's MDS UUID"):
        export(contents, out, "mds-reports", regulatory=bad_provider)
    with pytest.raises(ExportError, match="not an area dimension"):
        export(contents, out, "mds-reports", regulatory=RegulatoryOptions("UTC", "trips", "car"))
    with pytest.raises(ExportError, match="unknown IANA time zone"):
        export(
            contents, out, "mds-reports", regulatory=RegulatoryOptions("Mars/Olympus", None, "car")
        )
    availability = ViewContents(contents.contract, contents.contract.view("availability"))
    with pytest.raises(ExportError, match="'vehicle_events' is not a trips stream"):
        export(availability, out, "mds-reports", regulatory=RegulatoryOptions(vehicle_type="car"))
    with pytest.raises(ExportError, match="no sum of the 'nights' field"):
        export(contents, out, "eu-str-activity")
    assert not out.exists()


def test_mds_reports_refuses_windows_that_straddle_months(tmp_path: Path) -> None:
    def thirty_days(data: dict[str, Any]) -> None:
        od = data["views"][1]
        od["window"] = od["time_bucket"] = "P30D"
        data["pseudonymisation"] = {"rotation": "P30D", "key_retention": "P90D"}

    contract = load_example(tmp_path, "micromobility", thirty_days)
    thirty = 30 * DAY
    contents = ViewContents(
        contract,
        contract.view("origin_destination"),
        [],
        [report(MARCH // thirty * thirty, 0, 0, window=thirty)],
    )
    options = RegulatoryOptions(vehicle_type="bicycle")
    with pytest.raises(ExportError, match="do not tile calendar months in UTC"):
        export(contents, tmp_path / "r.csv", "mds-reports", regulatory=options)


def test_eu_str_activity_uses_the_window_as_period_and_flags_unknowns(tmp_path: Path) -> None:
    rentals = load_example(tmp_path, "rentals")
    thirty = 30 * DAY
    first = MARCH // thirty * thirty
    measures = {"nights": 40.0, "guests": 90.0, "listings": 6, "listing_urls": 6, "stays": 12}
    groups = [
        group(first, {"district": "1er"}, measures, window=thirty),
        group(first + thirty, {"district": "2e"}, measures, window=thirty),
    ]
    reports = [
        report(first, 1, 0, k=5, window=thirty),
        report(first + thirty, 1, 3, k=5, window=thirty),  # suppressed three districts
    ]
    contents = ViewContents(rentals, rentals.view("nights_by_district"), groups, reports)
    out = tmp_path / "activity.csv"
    export(contents, out, "eu-str-activity")
    header, *rows = read_csv(out)
    assert header == [
        "period_start",
        "period_end",
        "period",
        "area_id",
        "nights",
        "guests",
        "conf_status",
    ]
    start, middle, end = (
        datetime.fromtimestamp(t / 1000, tz=UTC).isoformat()
        for t in (first, first + thirty, first + 2 * thirty)
    )
    assert rows == [
        [start, middle, "P30D", "1er", "40", "90", "F"],
        [start, middle, "P30D", "2e", "0", "0", "F"],  # clear window without 2e: nothing there
        [middle, end, "P30D", "1er", "", "", "C"],  # may be one of the three suppressed
        [middle, end, "P30D", "2e", "40", "90", "F"],
    ]
