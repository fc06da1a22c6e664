"""On the real broker: ``respublica export --format mds-reports`` and ``eu-str-activity`` over
views a worker released.

MDS Reports needs a whole released month: this module's worker gets the trips of June 1 and a
heartbeat past June, so it reports every hour of June (empty ones with 0 groups). The file is
checked against the spec's column set (MDS 2.0.2, written out in ``rows.py``), each row's form,
the redaction of every count a suppression may have touched, the exact sums elsewhere, and the
absence of anything personal. The EU file is checked against the groups of the package's
``published`` rentals view that it sums.
"""

from __future__ import annotations

import csv
import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from kafka import KafkaAdminClient, KafkaProducer

from broker.kafka.internal import heartbeat_headers
from broker.kafka.local import free_port
from broker.kafka.public_reader import ViewContents, read_view
from broker.kafka.settings import as_settings
from contracts.model import Contract
from tests.analysts.conftest import Published, own_consumers
from tests.analysts.rows import MDS_REDACTED, MDS_REPORTS_SPEC_COLUMNS
from tests.analysts.test_analysts_e2e import (
    assert_nothing_personal,
    cli_args,
    personal_values,
    run_cli,
)
from tests.worker.support import (
    WorkerProcess,
    create_topics,
    delete_topics,
    encode_raw,
    expected_windows,
    mobility_events,
    produce_raw,
    read_public,
    unique_contract,
    wait_for,
)

pytestmark = pytest.mark.integration

MDS_VEHICLE_TYPES = {
    "bicycle",
    "bus",
    "cargo_bicycle",
    "car",
    "delivery_robot",
    "moped",
    "motorcycle",
    "scooter_standing",
    "scooter_seated",
    "truck",
    "other",
}


JULY_2 = int(datetime(2026, 7, 2, tzinfo=UTC).timestamp() * 1000)
BY_ORIGIN = {
    "name": "trips_by_origin",
    "stream": "trips",
    "description": "Trips per origin H3 cell (resolution 7) per hour",
    "group_by": [
        {
            "type": "h3",
            "name": "origin_cell",
            "lat": "start_lat",
            "lon": "start_lon",
            "resolution": 7,
        }
    ],
    "time_bucket": "PT1H",
    "window": "PT1H",
    "measures": [{"type": "count", "name": "trips"}],
    "k": 10,
}


@dataclass
class Released:
    """A micromobility contract whose trips views a worker released for all of June 2026."""

    bootstrap: str
    contract: Contract
    trips: list[dict[str, Any]]

    def args(self, view: str) -> list[str]:
        source = self.contract.source
        assert source is not None
        return [self.contract.id, view, "--bootstrap", self.bootstrap, "--contracts", str(source)]


def with_trips_by_origin(data: dict[str, Any]) -> None:
    """A view grouped by the MDS geography alone, so its months can be exact."""
    own_consumers(data)
    data["views"].append(BY_ORIGIN)
    data["consumers"][0]["views"].append("trips_by_origin")


@pytest.fixture(scope="module")
def released(
    kafka_bootstrap: str, kafka_admin: KafkaAdminClient, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Released]:
    tmp = tmp_path_factory.mktemp("mds")
    contract = unique_contract(tmp, "micromobility", edit=with_trips_by_origin)
    names = create_topics(kafka_bootstrap, contract)
    trips = mobility_events(3000)["trips"]
    producer = KafkaProducer(**as_settings(kafka_bootstrap).kafka_python("tests"), acks="all")
    worker = WorkerProcess(
        kafka_bootstrap,
        [contract.source],
        "mds-1",
        f"mds-{contract.id}",
        tmp,
        free_port(),  # type: ignore[list-item]
    )
    try:
        raw = contract.topic_raw("trips")
        produce_raw(producer, raw, encode_raw(contract, "trips", trips))
        for partition in range(contract.stream("trips").partitions):  # time has passed June
            producer.send(raw, partition=partition, value=b"", headers=heartbeat_headers(JULY_2))
        producer.flush(timeout=60)
        worker.start()
        for view in ("origin_destination", "trips_by_origin"):
            due = expected_windows(contract, {"trips": trips}, view, watermarks={"trips": JULY_2})

            def done(view: str = view, due: Any = due) -> bool:
                assert worker.alive(), worker.log_tail()
                return len(read_public(kafka_bootstrap, contract, view).windows) >= len(due)

            wait_for(done, 240, f"every window of {view} up to July 2", every_s=1.0)
        yield Released(kafka_bootstrap, contract, trips)
    finally:
        worker.terminate(timeout_s=30)
        producer.close(timeout=10)
        delete_topics(kafka_admin, names)


def read_rows(path: Path) -> tuple[list[str], list[dict[str, str]]]:
    with path.open(newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        return list(reader.fieldnames or []), list(reader)


def export_mds(released: Released, tmp_path: Path, view: str) -> Path:
    out = tmp_path / f"{view}.csv"
    code, text = run_cli(
        [
            "export",
            *released.args(view),
            "--format",
            "mds-reports",
            "--vehicle-type",
            "scooter_standing",
            "--timezone",
            "Europe/Paris",
            "--out",
            str(out),
        ]
    )
    assert code == 0, text
    return out


def raw_values(released: Released) -> set[str]:
    """Vehicle and trip ids of the input: neither may reach a file."""
    return {str(t[f]) for t in released.trips for f in ("vehicle_id", "trip_id", "event_id")}


@pytest.mark.parametrize("view", ["origin_destination", "trips_by_origin"])
def test_mds_reports_has_the_spec_columns_and_well_formed_rows(
    released: Released, tmp_path: Path, view: str
) -> None:
    out = export_mds(released, tmp_path, view)
    header, rows = read_rows(out)
    assert header == MDS_REPORTS_SPEC_COLUMNS
    assert out.read_bytes().startswith(",".join(MDS_REPORTS_SPEC_COLUMNS).encode() + b"\r\n")
    assert rows, "no complete month: the test would prove nothing"
    assert {row["start_date"] for row in rows} == {"2026-06-01"}  # May and July are not whole
    for row in rows:
        assert re.fullmatch(r"\d{4}-\d{2}-01", row["start_date"])
        assert row["duration"] == "P1M"
        assert row["special_group_type"] == "all_riders"
        assert row["vehicle_type"] in MDS_VEHICLE_TYPES
        assert row["provider_id"] == ""
        assert row["trip_count"] == MDS_REDACTED or int(row["trip_count"]) >= 10
        assert row["rider_count"] == ""  # no view counts riders: unavailable, not redacted
    assert_nothing_personal(out.read_text(encoding="utf-8"), raw_values(released))


def opaque_hours(contents: ViewContents) -> list[int]:
    """Window starts of the reports that suppressed or withheld something."""
    return [
        r.window_start
        for r in contents.reports
        if r.groups_suppressed or r.withheld_reason is not None
    ]


def test_mds_reports_redacts_an_origin_whose_destinations_may_be_suppressed(
    released: Released, tmp_path: Path
) -> None:
    _, rows = read_rows(export_mds(released, tmp_path, "origin_destination"))
    contents = read_view(released.bootstrap, released.contract, "origin_destination")
    assert opaque_hours(contents), "nothing suppressed in June: the test would prove nothing"
    # Any suppressed (origin, destination) group may start in any origin: every June sum over
    # destinations may miss one, so every count is redacted, none under-reported.
    assert {row["trip_count"] for row in rows} == {MDS_REDACTED}
    origins = {g.group["origin_cell"] for g in contents.groups}
    assert {row["geography_id"] for row in rows} == origins


def test_mds_reports_of_an_origin_view_sums_june_unless_a_suppression_may_hide_part(
    released: Released, tmp_path: Path
) -> None:
    _, rows = read_rows(export_mds(released, tmp_path, "trips_by_origin"))
    contents = read_view(released.bootstrap, released.contract, "trips_by_origin")
    opaque = opaque_hours(contents)
    assert opaque, "nothing suppressed in June: the test would prove nothing"
    redacted = 0
    for row in rows:
        hours = {
            g.window_start: int(g.measures["trips"])
            for g in contents.groups
            if g.group["origin_cell"] == row["geography_id"]
        }
        if any(h not in hours for h in opaque) or sum(hours.values()) < 10:
            assert row["trip_count"] == MDS_REDACTED, row  # it may be a suppressed group
            redacted += 1
        else:
            assert int(row["trip_count"]) == sum(hours.values()), row
    assert 0 < redacted < len(rows), "every row alike: the test would not tell the cases apart"


def test_mds_reports_refuses_a_view_of_vehicle_events(
    released: Released, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "availability.csv"
    args = released.args("availability")
    code, _ = run_cli(["export", *args, "--format", "mds-reports", "--out", str(out)])
    assert code == 1
    assert "'vehicle_events' is not a trips stream" in capsys.readouterr().err
    assert not out.exists()


def test_eu_str_activity_sums_the_published_nights_and_guests(
    published: Published, tmp_path: Path
) -> None:
    out = tmp_path / "activity.csv"
    args = cli_args(published, "rentals", "nights_by_district")
    code, text = run_cli(["export", *args, "--format", "eu-str-activity", "--out", str(out)])
    assert code == 0, text
    header, rows = read_rows(out)
    assert header == [
        "period_start",
        "period_end",
        "period",
        "area_id",
        "nights",
        "guests",
        "conf_status",
    ]
    contents = read_view(published.bootstrap, published.rentals, "nights_by_district")
    reports = {r.window_start: r for r in contents.reports}
    assert rows and {r["conf_status"] for r in rows} <= {"F", "C"}
    assert any(r["conf_status"] == "F" and r["nights"] not in ("", "0") for r in rows)
    for row in rows:
        start = int(datetime.fromisoformat(row["period_start"]).timestamp() * 1000)
        assert row["period"] == "P30D"
        found = [
            g
            for g in contents.groups
            if g.window_start == start and g.group["district"] == row["area_id"]
        ]
        if row["conf_status"] == "C":
            assert not found and reports[start].groups_suppressed
            assert row["nights"] == row["guests"] == ""
            continue
        assert float(row["nights"]) == sum(g.measures["nights"] for g in found)
        assert float(row["guests"]) == sum(g.measures["guests"] for g in found)
    assert_nothing_personal(out.read_text(encoding="utf-8"), personal_values(published))
