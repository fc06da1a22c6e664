"""``broker.kafka.public_reader`` on real releases: typed rows equal the oracle, bounds, dedup."""

from __future__ import annotations

import csv
import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from kafka import KafkaAdminClient, KafkaProducer

from broker.cli import main
from broker.deadline import Deadline
from broker.kafka.public_reader import (
    LeftOut,
    PublishedGroup,
    ViewContents,
    follow_view,
    iso_utc,
    read_view,
)
from broker.kafka.publish import H_POLICY_HASH, OutRecord, ReleaseEncoder
from broker.kafka.settings import as_settings
from contracts.model import Contract
from contracts.policy_hash import short_policy_hash
from policies.oracle import evaluate
from policies.pseudonymise import KeyRing
from tests.analysts.conftest import VIEWS, Published
from tests.audit.support import genuine_group, public_headers
from tests.worker.support import (
    REPORT_FIELDS,
    _group_row,
    _num,
    create_topics,
    delete_topics,
    mobility_events,
    unique_contract,
)

pytestmark = pytest.mark.integration


def canonical(contents: ViewContents) -> dict[tuple[int, int], Any]:
    """``read_view`` rows in the canonical form of ``tests/worker/support.py``."""
    out = {}
    for window in contents.windows():
        report = contents.report_of(window)
        assert report is not None
        rows = sorted(_group_row(g.group, g.measures) for g in contents.groups_of(window))
        values = tuple(getattr(report, k) for k in REPORT_FIELDS) + (_num(report.epsilon),)
        out[window] = (rows, values)
    return out


@pytest.mark.parametrize(("contract", "view"), VIEWS)
def test_read_view_returns_what_the_oracle_computes(
    published: Published, contract: str, view: str
) -> None:
    contents = read_view(published.bootstrap, published.contract(contract), view)
    assert contents.undecodable == []
    assert canonical(contents) == published.expected[(contract, view)]
    first = contents.groups[0]
    assert isinstance(first, PublishedGroup)
    assert first.topic == published.contract(contract).topic_public(view)
    assert first.offset >= 0
    assert first.headers["respublica.contract"] == published.contract(contract).id


def test_read_view_bounds_are_on_window_start(published: Published) -> None:
    contents = read_view(published.bootstrap, published.mobility, "availability")
    windows = contents.windows()
    assert len(windows) >= 3
    since, until = windows[1][0], windows[-1][0]
    bounded = read_view(
        published.bootstrap, published.mobility, "availability", since_ms=since, until_ms=until
    )
    assert bounded.windows() == windows[1:-1]
    assert all(since <= g.window_start < until for g in bounded.groups)


@pytest.fixture
def hand_published(
    kafka_bootstrap: str, kafka_admin: KafkaAdminClient, tmp_path: Path
) -> Iterator[tuple[Contract, list[OutRecord]]]:
    """A fresh contract's topics and the records of its oracle releases (not yet produced)."""
    contract = unique_contract(tmp_path, "micromobility")
    names = create_topics(kafka_bootstrap, contract)
    releases = evaluate(contract, mobility_events(3000), keyring=KeyRing())["availability"]
    encoder = ReleaseEncoder(contract, contract.view("availability"))
    try:
        yield contract, [r for release in releases for r in encoder.records(release)]
    finally:
        delete_topics(kafka_admin, names)


def test_read_view_keeps_the_last_record_per_key_and_only_committed_ones(
    kafka_bootstrap: str, hand_published: tuple[Contract, list[OutRecord]]
) -> None:
    contract, records = hand_published
    groups = [r for r in records if b'"report"' not in r.key]
    assert len(groups) >= 3
    producer = KafkaProducer(**as_settings(kafka_bootstrap).kafka_python("tests"), acks="all")
    aborting = KafkaProducer(
        **as_settings(kafka_bootstrap).kafka_python("tests"),
        transactional_id=f"test-{uuid.uuid4().hex[:8]}",
    )
    try:
        for record in [*records, groups[0]]:  # a re-emitted record: same key, same bytes
            producer.send(record.topic, key=record.key, value=record.value, headers=record.headers)
        producer.send(groups[1].topic, key=groups[1].key, value=None)  # tombstone
        producer.send(groups[2].topic, key=b'{"window_start":0}', value=b"\x00garbage")
        producer.flush(timeout=30)
        aborting.init_transactions()
        aborting.begin_transaction()
        aborting.send(groups[0].topic, key=b'{"aborted":1}', value=groups[0].value)
        aborting.flush(timeout=30)
        aborting.abort_transaction()
    finally:
        producer.close(timeout=10)
        aborting.close(timeout=10)
    contents = read_view(kafka_bootstrap, contract, "availability")
    assert contents.records_read == len(records) + 3  # the aborted one is never read
    assert len(contents.groups) == len(groups) - 1
    keys = [(g.window_start, json.dumps(g.group, sort_keys=True)) for g in contents.groups]
    assert len(keys) == len(set(keys))
    assert len(contents.undecodable) == 1
    assert len(contents.reports) == len(records) - len(groups)


def test_read_view_and_export_leave_out_foreign_policies_and_unreported_windows(
    kafka_bootstrap: str,
    hand_published: tuple[Contract, list[OutRecord]],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    contract, records = hand_published
    genuine = [r for r in records if b'"report"' not in r.key]
    first = json.loads(genuine[0].key)
    window = (first["window_start"], first["window_end"])
    # A group of a released window, but under another policy hash (a forged or stale release).
    forged_key, forged_value = genuine_group(contract, window, "881f90a0b1fffff")
    forged_headers = [
        (name, b"0123456789abcdef" if name == H_POLICY_HASH else value)
        for name, value in public_headers(contract, window)
    ]
    # A group of the contract's policy for a window that has no suppression report.
    lone = (window[0] + 400 * 86_400_000, window[1] + 400 * 86_400_000)
    lone_key, lone_value = genuine_group(contract, lone, "881f90a0b1fffff")
    producer = KafkaProducer(**as_settings(kafka_bootstrap).kafka_python("tests"), acks="all")
    try:
        for record in records:
            producer.send(record.topic, key=record.key, value=record.value, headers=record.headers)
        topic = contract.topic_public("availability")
        producer.send(topic, key=forged_key, value=forged_value, headers=forged_headers)
        producer.send(topic, key=lone_key, value=lone_value, headers=public_headers(contract, lone))
        producer.flush(timeout=30)
    finally:
        producer.close(timeout=10)

    contents = read_view(kafka_bootstrap, contract, "availability")
    assert contents.left_out == LeftOut(windows_without_report=1, foreign_policy_hash=1)
    assert len(contents.groups) == len(genuine)
    assert lone not in contents.windows()
    assert all(g.headers[H_POLICY_HASH] == short_policy_hash(contract) for g in contents.groups)
    # `respublica subscribe` shows only this policy's releases too.
    expected_rows = len(records) + 1  # every genuine record, and the lone window's group
    followed: list[Any] = []
    deadline = Deadline(30)
    for row in follow_view(
        kafka_bootstrap, contract, "availability", poll_timeout_s=0.2, stop=deadline.expired
    ):
        followed.append(row)
        if len(followed) == expected_rows:
            break
    assert len(followed) == expected_rows
    assert all(r.headers[H_POLICY_HASH] == short_policy_hash(contract) for r in followed)

    assert contract.source is not None
    out = tmp_path / "availability.csv"
    code = main(
        [
            "export",
            contract.id,
            "availability",
            "--bootstrap",
            kafka_bootstrap,
            "--contracts",
            str(contract.source),
            "--format",
            "csv",
            "--out",
            str(out),
        ]
    )
    assert code == 0
    err = capsys.readouterr().err
    assert "left out 1 window(s) without a suppression report" in err
    assert "1 record(s) whose policy hash is not the contract's" in err
    with out.open(encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == len(genuine)
    assert iso_utc(lone[0]) not in {r["window_start"] for r in rows}
    meta = json.loads((tmp_path / "availability.csv.meta.json").read_text(encoding="utf-8"))
    assert meta["left_out"] == {"windows_without_report": 1, "foreign_policy_hash": 1}
    assert meta["rows"] == len(genuine)
    assert meta["published_under"] == [
        {"contract_version": str(contract.version), "policy_hash": short_policy_hash(contract)}
    ]
