"""On the real broker: export, subscribe and Confluent decoding of real public records.

A worker publishes a small stream of two example contracts once per module (``published``);
each file format must hold exactly the rows ``read_view`` returns, and nothing personal.
"""

from __future__ import annotations

import asyncio
import csv
import io
import json
import re
import time
from collections.abc import Sequence
from contextlib import redirect_stdout
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest
from aiohttp.test_utils import TestClient, TestServer
from confluent_kafka.schema_registry import SchemaRegistryClient
from confluent_kafka.schema_registry.avro import AvroDeserializer
from confluent_kafka.serialization import MessageField, SerializationContext
from kafka import KafkaConsumer, TopicPartition

from broker.analysts.export.table import columns, table_row
from broker.cli import main
from broker.ingest.gateway import GatewayConfig, make_app
from broker.kafka.public_reader import ViewContents, follow_view, iso_utc, read_view
from broker.kafka.serde import read_header
from broker.kafka.settings import as_settings
from tests.analysts.conftest import NullWriter, Published

pytestmark = pytest.mark.integration

PSEUDONYM = re.compile(r"\b[a-z2-7]{26}\b")  # base32 of 16 HMAC bytes (policies/pseudonymise)
EXPORTS = [
    ("mobility", "availability"),
    ("mobility", "origin_destination"),
    ("rentals", "nights_by_district"),
]


def personal_values(published: Published) -> set[str]:
    """Raw subject ids and raw values of pseudonymised fields in the input."""
    out = published.raw_subjects()
    view = published.rentals.view("nights_by_district")
    for records in published.events["rentals"].values():
        out |= {str(r[f]) for r in records for f in view.pseudonymise if r.get(f)}
    return out


def assert_nothing_personal(text: str, personal: set[str]) -> None:
    assert not PSEUDONYM.search(text), "a pseudonym-shaped token left the broker"
    tokens = set(re.findall(r"[^\s,\"':{}\[\]]+", text))
    assert not tokens & personal, "a raw subject id left the broker"


def expected_rows(contents: ViewContents) -> list[dict[str, Any]]:
    """``read_view`` rows as export rows, window bounds in ISO 8601."""
    rows = []
    for group in contents.groups:
        row = table_row(contents.view, group)
        row["window_start"], row["window_end"] = (
            iso_utc(row["window_start"]),
            iso_utc(row["window_end"]),
        )
        rows.append(row)
    return rows


def run_cli(args: Sequence[str]) -> tuple[int, str]:
    buffer = io.StringIO()
    with redirect_stdout(buffer):
        code = main(list(args))
    return code, buffer.getvalue()


def cli_args(published: Published, contract: str, view: str) -> list[str]:
    source = published.contract(contract).source
    assert source is not None
    return [
        published.contract(contract).id,
        view,
        "--bootstrap",
        published.bootstrap,
        "--contracts",
        str(source),
    ]


def csv_typed(value: str, kind: str) -> Any:
    if value == "":
        return None
    return {"integer": int, "number": float}.get(kind, str)(value)


@pytest.mark.parametrize(("contract", "view"), EXPORTS)
def test_csv_export_holds_what_read_view_returns(
    published: Published, tmp_path: Path, contract: str, view: str
) -> None:
    contents = read_view(published.bootstrap, published.contract(contract), view)
    assert contents.groups, "nothing published: the test would prove nothing"
    out = tmp_path / f"{view}.csv"
    code, text = run_cli(
        [
            "export",
            *cli_args(published, contract, view),
            "--format",
            "csv",
            "--out",
            str(out),
            "--include-reports",
        ]
    )
    assert code == 0, text
    kinds = {c.name: c.type for c in columns(contents.view)}
    with out.open(encoding="utf-8") as handle:
        rows = [
            {k: csv_typed(v, kinds[k]) for k, v in row.items()} for row in csv.DictReader(handle)
        ]
    assert rows == expected_rows(contents)
    reports_csv = tmp_path / f"{view}.reports.csv"
    with reports_csv.open(encoding="utf-8") as handle:
        reports = list(csv.DictReader(handle))
    assert len(reports) == len(contents.reports)
    meta = json.loads((tmp_path / f"{view}.csv.meta.json").read_text(encoding="utf-8"))
    assert meta["contract"] == published.contract(contract).id and meta["rows"] == len(rows)
    personal = personal_values(published)
    for path in (out, reports_csv, tmp_path / f"{view}.csv.meta.json"):
        assert_nothing_personal(path.read_text(encoding="utf-8"), personal)


@pytest.mark.parametrize(("contract", "view"), EXPORTS)
def test_parquet_and_geojson_exports_hold_the_same_rows(
    published: Published, tmp_path: Path, contract: str, view: str
) -> None:
    contents = read_view(published.bootstrap, published.contract(contract), view)
    expected = expected_rows(contents)
    parquet, geojson = tmp_path / f"{view}.parquet", tmp_path / f"{view}.geojson"
    for fmt, out in (("parquet", parquet), ("geojson", geojson)):
        code, text = run_cli(
            ["export", *cli_args(published, contract, view), "--format", fmt, "--out", str(out)]
        )
        assert code == 0, text
    table = pq.read_table(parquet).to_pylist()
    for row in table:
        row["window_start"] = iso_utc(int(row["window_start"].timestamp() * 1000))
        row["window_end"] = iso_utc(int(row["window_end"].timestamp() * 1000))
    assert table == expected
    document = json.loads(geojson.read_text(encoding="utf-8"))
    assert [f["properties"] for f in document["features"]] == expected
    assert all(f["geometry"] is not None for f in document["features"])
    personal = personal_values(published)
    assert_nothing_personal(geojson.read_text(encoding="utf-8"), personal)
    assert_nothing_personal(json.dumps(table, default=str), personal)


def test_export_bounds_select_windows_by_start(published: Published, tmp_path: Path) -> None:
    contents = read_view(published.bootstrap, published.mobility, "availability")
    windows = contents.windows()
    since, until = iso_utc(windows[1][0]), iso_utc(windows[2][0])
    out = tmp_path / "one.csv"
    code, _ = run_cli(
        [
            "export",
            *cli_args(published, "mobility", "availability"),
            "--format",
            "csv",
            "--out",
            str(out),
            "--since",
            since,
            "--until",
            until,
        ]
    )
    assert code == 0
    with out.open(encoding="utf-8") as handle:
        starts = {row["window_start"] for row in csv.DictReader(handle)}
    assert starts <= {since}
    meta = json.loads((tmp_path / "one.csv.meta.json").read_text(encoding="utf-8"))
    assert (meta["since"], meta["until"]) == (since, until)


def test_subscribe_prints_groups_then_the_report_line(published: Published) -> None:
    contents = read_view(published.bootstrap, published.mobility, "availability")
    code, text = run_cli(
        [
            "subscribe",
            *cli_args(published, "mobility", "availability"),
            "--from-beginning",
            "--max-windows",
            "2",
        ]
    )
    assert code == 0
    lines = text.splitlines()
    assert lines[0].split() == ["window", "cell", "events", "vehicles"]
    report_lines = [line.strip() for line in lines if line.strip().startswith("k=")]
    expected = [r.summary() for r in contents.reports[:2]]
    assert report_lines == expected
    assert re.fullmatch(r"k=10: \d+ groups published, \d+ suppressed", expected[0])
    first_window = [
        g for g in contents.groups if g.window_start == contents.reports[0].window_start
    ]
    assert (
        len(lines)
        == 1
        + len(first_window)
        + 1
        + len(
            contents.groups_of((contents.reports[1].window_start, contents.reports[1].window_end))
        )
        + 1
    )
    for group in first_window:
        assert any(
            group.group["cell"] in line and str(group.measures["vehicles"]) in line
            for line in lines[1:]
        )


def test_follow_view_yields_live_rows_in_topic_order(published: Published) -> None:
    contents = read_view(published.bootstrap, published.rentals, "nights_by_cell")
    rows = follow_view(published.bootstrap, published.rentals, "nights_by_cell")
    seen = []
    try:
        for row in rows:
            seen.append(row)
            if len(seen) == len(contents.groups) + len(contents.reports):
                break
    finally:
        rows.close()
    assert sorted(r.offset for r in seen) == [r.offset for r in seen]
    assert {r.offset for r in seen} == {r.offset for r in [*contents.groups, *contents.reports]}


def first_records(published: Published, view: str) -> list[Any]:
    """The raw Kafka records of a public topic up to its first report, read_committed."""
    consumer = KafkaConsumer(
        **as_settings(published.bootstrap).kafka_python("tests"),
        group_id=None,
        enable_auto_commit=False,
        isolation_level="read_committed",
    )
    tp = TopicPartition(published.mobility.topic_public(view), 0)
    records: list[Any] = []
    deadline = time.monotonic() + 30
    try:
        consumer.assign([tp])
        consumer.seek_to_beginning(tp)
        while not any(json.loads(r.key).get("report") for r in records):
            assert time.monotonic() < deadline, "no report on the public topic within 30 s"
            for batch in consumer.poll(timeout_ms=200).values():
                records += batch
        return records
    finally:
        consumer.close()


async def test_confluent_avro_deserializer_decodes_public_records_via_the_gateway(
    published: Published,
) -> None:
    view = "availability"
    records = first_records(published, view)
    config = GatewayConfig(contracts=(published.mobility, published.rentals), providers=())
    client: TestClient[Any, Any] = TestClient(
        TestServer(make_app(config, NullWriter()), host="127.0.0.1")
    )
    await client.start_server()
    try:
        registry = SchemaRegistryClient({"url": f"http://127.0.0.1:{client.port}"})
        deserializer = AvroDeserializer(registry)
        topic = published.mobility.topic_public(view)
        context = SerializationContext(topic, MessageField.VALUE)
        contents = read_view(published.bootstrap, published.mobility, view)
        by_offset = {r.offset: r for r in [*contents.groups, *contents.reports]}
        kinds = set()
        for record in records:
            # The client is synchronous: run it off the loop that serves the registry.
            decoded = await asyncio.to_thread(deserializer, record.value, context)
            ours = by_offset[record.offset]
            assert decoded["window_start"] == ours.window_start
            if json.loads(record.key).get("report"):
                kinds.add("report")
                assert decoded["groups_suppressed"] == ours.groups_suppressed  # type: ignore[union-attr]
            else:
                kinds.add("group")
                assert decoded["cell"] == ours.group["cell"]  # type: ignore[union-attr]
                assert decoded["vehicles"] == ours.measures["vehicles"]  # type: ignore[union-attr]
            assert read_header(record.value) > 0
        assert kinds == {"group", "report"}
    finally:
        await client.close()
