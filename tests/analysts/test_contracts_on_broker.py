"""On the real (secure) broker: an analyst reads a view with credentials alone.

``respublica apply`` publishes each contract, with its schemas and zone files, on
``respublica._contracts`` and lets the contract's consumers read it; the analyst's
``respublica export`` and ``subscribe`` then need no contract file. Only the admin writes the
topic; a user no contract lists cannot read it.
"""

from __future__ import annotations

import csv
import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pytest
import yaml
from kafka import KafkaProducer
from kafka.errors import KafkaError

from broker.deadline import wait_for
from broker.kafka import catalogue, users
from broker.kafka.catalogue import CATALOGUE_TOPIC, CatalogueError, EntryKind
from broker.kafka.public_reader import PublicReaderError, read_view
from broker.kafka.settings import KafkaSettings
from contracts import load_contracts
from contracts.policy_hash import policy_hash
from tests.analysts.conftest import Published
from tests.kafka.acl_support import require_scram, wait_until_authenticates, withdraw

pytestmark = pytest.mark.integration


@dataclass
class Users:
    """Client configs of the mobility contract's analyst and of a user no contract lists."""

    analyst: Path
    stranger: Path


def respublica(
    *args: str, config: Path | None = None, cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    """The CLI in a child process; with ``config``, as that user and with no contract path."""
    env = dict(os.environ)
    env.pop("RESPUBLICA_CONTRACTS", None)
    if config is not None:
        env["RESPUBLICA_KAFKA_CONFIG"] = str(config)
    return subprocess.run(
        [sys.executable, "-m", "broker.cli", *args],
        capture_output=True,
        text=True,
        env=env,
        cwd=cwd,
        timeout=180,
        check=False,
    )


@pytest.fixture(scope="module")
def applied(published: Published, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Users]:
    """``respublica apply`` of both contracts (topics, ACLs, contracts), and two users."""
    admin = require_scram(published.bootstrap)
    folder = tmp_path_factory.mktemp("users")
    sources = [str(c.source) for c in (published.mobility, published.rentals)]
    ids = {published.mobility.id, published.rentals.id}
    analyst = published.mobility.consumers[0].principal.removeprefix("User:")
    stranger = f"{published.mobility.id}-stranger"
    made: list[str] = []
    try:
        done = respublica("apply", *sources)
        assert done.returncode == 0, done.stdout + done.stderr
        assert f"+ publish contract {published.mobility.id} v1" in done.stdout
        assert "2 contract(s) published for analysts" in done.stdout
        paths = {}
        with users.ScramUsers(admin) as scram:
            for name in (analyst, stranger):
                password = users.new_password()
                scram.upsert(name, password)
                made.append(name)
                paths[name] = users.write_client_config(
                    folder / f"{name}.kafka.yaml", users.client_config(admin, name, password)
                )
        for path in paths.values():
            wait_until_authenticates(KafkaSettings.load(path))
        # ACLs reach the broker through its metadata log too.
        wait_for(lambda: _can_list(KafkaSettings.load(paths[analyst])), 30, "the analyst's grant")
        yield Users(paths[analyst], paths[stranger])
    finally:
        withdraw(published.bootstrap, ids)
        _tombstones(admin, ids)
        with users.ScramUsers(admin) as scram:
            for name in made:
                scram.remove(name)


def _can_list(settings: KafkaSettings) -> bool:
    try:
        catalogue.read_catalogue(settings)
    except CatalogueError:
        return False
    return True


def _tombstones(admin: KafkaSettings, ids: set[str]) -> None:
    """Take the test's contracts off the shared topic (compaction drops them)."""
    producer = KafkaProducer(**admin.kafka_python("tests"), acks="all")
    try:
        for cid in ids:
            producer.send(CATALOGUE_TOPIC, key=cid.encode(), value=None)
        producer.flush(timeout=30)
    finally:
        producer.close(timeout=10)


def test_an_analyst_exports_and_subscribes_with_credentials_only(
    published: Published, applied: Users, tmp_path: Path
) -> None:
    contract = published.mobility
    out = tmp_path / "availability.csv"
    done = respublica(
        "export",
        contract.id,
        "availability",
        "--format",
        "csv",
        "--out",
        str(out),
        config=applied.analyst,
        cwd=tmp_path,  # no contract file anywhere near
    )
    assert done.returncode == 0, done.stderr
    expected = read_view(published.bootstrap, contract, "availability")
    with out.open(encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == len(expected.groups) > 0
    assert "left out" not in done.stderr  # every record matched the fetched contract's hash

    tail = respublica(
        "subscribe",
        contract.id,
        "availability",
        "--from-beginning",
        "--max-windows",
        "1",
        config=applied.analyst,
        cwd=tmp_path,
    )
    assert tail.returncode == 0, tail.stderr
    assert tail.stdout.splitlines()[-1].strip() == expected.reports[0].summary()


def test_the_zones_of_a_view_come_from_the_broker_too(
    published: Published, applied: Users, kafka_settings: KafkaSettings
) -> None:
    fetched = catalogue.fetch_contract(kafka_settings, published.rentals.id, now=datetime.now(UTC))
    assert policy_hash(fetched) == policy_hash(published.rentals)
    by_id = read_view(published.bootstrap, published.rentals.id, "nights_by_district")
    by_file = read_view(published.bootstrap, published.rentals, "nights_by_district")
    assert by_id.groups == by_file.groups and by_id.reports == by_file.reports
    assert by_id.contract.view("nights_by_district").zones  # polygons for GeoJSON


def test_only_the_admin_writes_the_contracts_and_only_consumers_read_them(
    published: Published, applied: Users, tmp_path: Path
) -> None:
    analyst = KafkaSettings.load(applied.analyst)
    producer = KafkaProducer(**analyst.kafka_python("tests"), acks="all", retries=0)
    try:
        with pytest.raises(KafkaError):
            producer.send(CATALOGUE_TOPIC, key=b"forged", value=b"{}").get(timeout=20)
    finally:
        producer.close(timeout=5)

    refused = respublica(
        "export",
        published.mobility.id,
        "availability",
        "--format",
        "csv",
        "--out",
        str(tmp_path / "x.csv"),
        config=applied.stranger,
        cwd=tmp_path,
    )
    assert refused.returncode == 1
    assert f"no {CATALOGUE_TOPIC} topic that" in refused.stderr
    assert "respublica apply" in refused.stderr
    assert not (tmp_path / "x.csv").exists()


def test_a_view_of_another_contract_is_refused_naming_the_principal(
    published: Published, applied: Users
) -> None:
    # The broker hides a topic the principal may not describe: the analyst reading another
    # contract's view is told whose rights are missing, not only to run `respublica apply`.
    analyst = KafkaSettings.load(applied.analyst)
    topic = published.rentals.topic_public(published.rentals.view("nights_by_district"))
    with pytest.raises(PublicReaderError, match=rf"no topic {topic} that {analyst.username} may"):
        read_view(analyst, published.rentals, "nights_by_district", timeout_s=3)


def test_a_second_apply_publishes_nothing_and_a_new_version_replaces_the_old(
    published: Published, applied: Users, kafka_settings: KafkaSettings, tmp_path: Path
) -> None:
    again = respublica("plan", str(published.rentals.source))
    assert again.returncode == 0, again.stderr
    assert f"= keep    contract {published.rentals.id} v1" in again.stdout
    assert "0 contract(s) to publish" in again.stdout

    plan = catalogue.plan_catalogue(kafka_settings, [published.rentals], now=datetime.now(UTC))
    assert [e.kind for e in plan.entries] == [EntryKind.KEEP] and not plan.documents

    data = yaml.safe_load(published.rentals.source.read_text(encoding="utf-8"))  # type: ignore[union-attr]
    data["version"] = 2
    newer = published.contract_dir / "rentals-v2.yaml"
    newer.write_text(yaml.safe_dump(data), encoding="utf-8")
    v2 = load_contracts([newer], now=datetime.now(UTC))[0]
    plan = catalogue.plan_catalogue(kafka_settings, [v2], now=datetime.now(UTC))
    (entry,) = plan.entries
    assert entry.kind is EntryKind.REPLACE
    assert entry.describe().endswith(f"was v1 (policy {policy_hash(published.rentals)[:16]})")
    assert set(plan.documents) == {v2.id}  # planned only: the other tests read v1
