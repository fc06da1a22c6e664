"""``broker.kafka.public_reader`` on real releases: typed rows equal the oracle, bounds, dedup."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from kafka import KafkaAdminClient, KafkaProducer

from broker.kafka.public_reader import PublishedGroup, ViewContents, read_view
from broker.kafka.publish import OutRecord, ReleaseEncoder
from contracts.model import Contract
from policies.oracle import evaluate
from policies.pseudonymise import KeyRing
from tests.analysts.conftest import VIEWS, Published
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
    producer = KafkaProducer(bootstrap_servers=kafka_bootstrap, acks="all")
    aborting = KafkaProducer(
        bootstrap_servers=kafka_bootstrap, transactional_id=f"test-{uuid.uuid4().hex[:8]}"
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
