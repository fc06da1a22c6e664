"""``plan`` and ``apply`` against the real broker: created, altered, and a second run a no-op."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from kafka import KafkaAdminClient
from kafka.admin import ConfigResource, ConfigResourceType, NewPartitions

from broker.cli import main
from broker.kafka import topics
from contracts import Contract, load_contracts
from contracts.copies import example_data, write_contract
from tests.kafka.acl_support import withdraw

pytestmark = pytest.mark.integration
NOW = datetime(2026, 11, 26, tzinfo=UTC)
DAY_MS = 86_400_000


@pytest.fixture
def contract_file(tmp_path: Path) -> Callable[..., Path]:
    """A copy of the rentals example under a unique id (so topics never clash)."""
    unique = f"t{uuid.uuid4().hex[:10]}"

    def write(retention: str = "P30D") -> Path:
        data = example_data("rentals")
        data["id"] = unique
        data["streams"][0]["retention"] = retention
        return write_contract(data, tmp_path, "contract.yaml")

    return write


@pytest.fixture
def cleanup(kafka_bootstrap: str, kafka_admin: KafkaAdminClient) -> Iterator[list[Contract]]:
    applied: list[Contract] = []
    yield applied
    withdraw(kafka_bootstrap, {c.id for c in applied})  # the ACLs `respublica apply` made
    names = [s.name for c in applied for s in topics.contract_topics(c)]
    existing = set(kafka_admin.list_topics())
    doomed = [n for n in names if n in existing]
    if doomed:
        kafka_admin.delete_topics(doomed)


def _retention(admin: KafkaAdminClient, topic: str) -> str:
    described = admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, topic)])
    return str(described["topic"][topic]["retention.ms"]["value"])


def test_apply_creates_then_is_a_no_op_then_alters_retention(
    kafka_bootstrap: str,
    kafka_admin: KafkaAdminClient,
    contract_file: Callable[..., Path],
    cleanup: list[Contract],
) -> None:
    contract = load_contracts([contract_file("P30D")], now=NOW)[0]
    cleanup.append(contract)
    expected = {s.name for s in topics.contract_topics(contract)}
    with topics.TopicAdmin(kafka_bootstrap) as admin:
        first = topics.plan(admin, [contract])
        creates = {a.spec.name for a in first.actions if a.kind is topics.ActionKind.CREATE}
        assert creates == expected
        topics.apply(admin, first)
        assert expected <= set(kafka_admin.list_topics())
        raw = contract.topic_raw("activity")
        assert _retention(kafka_admin, raw) == str(30 * 86_400_000)
        assert _retention(kafka_admin, contract.topic_public("nights_by_cell")) == "-1"

        second = topics.plan(admin, [contract])
        assert second.pending == ()
        assert all(a.kind is topics.ActionKind.UNCHANGED for a in second.actions)

        longer = load_contracts([contract_file("P60D")], now=NOW)[0]
        third = topics.plan(admin, [longer])
        altered = {a.spec.name for a in third.pending}
        assert altered == {raw, longer.topic_ingest("activity"), longer.topic_dlq("activity")}
        topics.apply(admin, third)
        assert _retention(kafka_admin, raw) == str(60 * 86_400_000)

        shorter = load_contracts([contract_file("P7D")], now=NOW)[0]
        blocked = topics.plan(admin, [shorter])
        assert blocked.pending == ()
        reasons = [a.reason for a in blocked.actions if a.kind is topics.ActionKind.BLOCKED]
        assert reasons and all("--allow-data-loss" in r for r in reasons)
        topics.apply(admin, topics.plan(admin, [shorter], allow_data_loss=True))
        assert _retention(kafka_admin, raw) == str(7 * 86_400_000)


def test_cli_apply_twice_says_nothing_to_do(
    kafka_bootstrap: str,
    contract_file: Callable[..., Path],
    cleanup: list[Contract],
) -> None:
    path = contract_file()
    cleanup.append(load_contracts([path], now=NOW)[0])
    env = dict(os.environ, KAFKA_BOOTSTRAP=kafka_bootstrap)
    run = [sys.executable, "-m", "broker.cli", "apply", str(path)]
    first = subprocess.run(run, capture_output=True, text=True, env=env, timeout=120, check=False)
    assert first.returncode == 0, first.stderr
    assert "to create" in first.stdout and "Applied" in first.stdout
    second = subprocess.run(run, capture_output=True, text=True, env=env, timeout=120, check=False)
    assert second.returncode == 0, second.stderr
    assert "Nothing to do: the cluster already matches the contracts." in second.stdout


def test_plan_against_an_unreachable_cluster_is_a_clear_error() -> None:
    env = dict(os.environ, KAFKA_BOOTSTRAP="127.0.0.1:1")
    result = subprocess.run(
        [sys.executable, "-m", "broker.cli", "plan"],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )
    assert result.returncode == 1
    assert "cannot reach the Kafka cluster at 127.0.0.1:1" in result.stderr


def _set_retention(admin: KafkaAdminClient, topic: str, ms: int) -> None:
    resource = ConfigResource(ConfigResourceType.TOPIC, topic, {"retention.ms": str(ms)})
    assert admin.alter_configs([resource])["topic"][topic] == "OK"


def test_apply_says_what_it_withheld_and_fails_unless_told_otherwise(
    kafka_admin: KafkaAdminClient,
    contract_file: Callable[..., Path],
    cleanup: list[Contract],
    capsys: pytest.CaptureFixture[str],
) -> None:
    path = contract_file("P30D")
    contract = load_contracts([path], now=NOW)[0]
    cleanup.append(contract)
    raw, ingest = contract.topic_raw("activity"), contract.topic_ingest("activity")
    assert main(["apply", str(path)]) == 0
    capsys.readouterr()

    # By hand: a longer retention on raw. Apply must not quietly keep or cut it.
    _set_retention(kafka_admin, raw, 90 * DAY_MS)
    assert main(["apply", str(path)]) == 1
    out = capsys.readouterr().out
    assert "Nothing to do" not in out
    assert f"{raw}: withheld retention.ms: {90 * DAY_MS} -> {30 * DAY_MS}" in out
    assert "--allow-data-loss" in out and "--allow-skipped" in out
    assert _retention(kafka_admin, raw) == str(90 * DAY_MS)
    assert main(["apply", "--allow-skipped", str(path)]) == 0
    assert "Skipped 1" in capsys.readouterr().out

    # A partition added by hand, and a shorter retention in the contract: with
    # --allow-data-loss the cut is made beside the partition mismatch, which is reported.
    kafka_admin.create_partitions({ingest: NewPartitions(3)})
    shorter = contract_file("P7D")
    assert main(["apply", "--allow-data-loss", str(shorter)]) == 1
    out = capsys.readouterr().out
    assert "Nothing to do" not in out
    assert _retention(kafka_admin, ingest) == str(7 * DAY_MS)
    assert _retention(kafka_admin, raw) == str(7 * DAY_MS)
    assert f"{ingest}: has 3 partitions, contract says 2" in out
    # Three retention cuts, and the changed contract republished for analysts.
    assert "Applied 4 change(s)" in out and "1 contract(s) published for analysts" in out
