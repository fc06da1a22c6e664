"""ACLs from the contracts and SCRAM users, on the real (secure) broker.

``apply`` twice (the second run changes nothing), a consumer losing a view loses exactly that
grant, a hand-made ACL is never touched; ``respublica users add/rotate`` write a config the
user authenticates with, and the broker then lets that consumer read its view and nothing
internal. Skipped, with the reason, when the session broker has no authorizer.
"""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer, TopicPartition
from kafka.errors import TopicAuthorizationFailedError

from broker.deadline import Deadline, wait_for
from broker.kafka import acls, topics
from broker.kafka.acls import AclActionKind, AclBinding
from broker.kafka.settings import KafkaSettings
from contracts import Contract, load_contracts
from contracts.copies import example_data, write_contract
from tests.kafka.acl_support import (
    as_user,
    authenticates,
    require_authorizer,
    require_scram,
    wait_until_authenticates,
    withdraw,
)

pytestmark = pytest.mark.integration
NOW = datetime(2026, 11, 26, tzinfo=UTC)


@pytest.fixture
def lyon(tmp_path: Path, kafka_bootstrap: str) -> Iterator[Callable[..., Contract]]:
    """The micromobility example under a unique id, with unique consumer principals;
    its ACLs are withdrawn after the test."""
    require_authorizer(kafka_bootstrap)
    unique = f"acl-{uuid.uuid4().hex[:8]}"
    made: list[str] = []

    def make(consumers: list[dict[str, Any]] | None = None) -> Contract:
        data = example_data("micromobility")
        data["id"] = unique
        data["consumers"] = consumers or [
            {
                "principal": f"User:{unique}-analysts",
                "views": ["availability", "origin_destination"],
            },
            {"principal": f"User:{unique}-opendata", "views": ["availability"]},
        ]
        folder = tmp_path / uuid.uuid4().hex[:6]
        folder.mkdir()
        made.append(unique)
        return load_contracts([write_contract(data, folder, "contract.yaml")], now=NOW)[0]

    yield make
    withdraw(kafka_bootstrap, set(made))


def test_apply_twice_then_drop_a_view_leaves_hand_made_acls_alone(
    kafka_bootstrap: str, lyon: Callable[..., Contract]
) -> None:
    contract = lyon()
    analysts, opendata = (c.principal for c in contract.consumers)
    hand_made = AclBinding(
        f"{opendata}-hand", "TOPIC", contract.topic_public("origin_destination"), "LITERAL", "READ"
    )
    with acls.AclAdmin(kafka_bootstrap) as admin:
        admin.create([hand_made])
        try:
            first = acls.plan(admin, [contract])
            assert {a.kind for a in first.actions} == {AclActionKind.CREATE}
            acls.apply(admin, first)
            assert set(acls.contract_bindings(contract)) <= admin.bindings()

            second = acls.plan(admin, [contract])
            assert second.pending == ()
            assert all(a.kind is AclActionKind.UNCHANGED for a in second.actions)
            before = admin.bindings()
            acls.apply(admin, second)
            assert admin.bindings() == before

            fewer = lyon(
                [
                    {"principal": analysts, "views": ["availability"]},
                    {"principal": opendata, "views": ["availability"]},
                ]
            )
            third = acls.plan(admin, [fewer])
            origin = contract.topic_public("origin_destination")
            gone = {
                AclBinding(analysts, "TOPIC", origin, "LITERAL", "READ"),
                AclBinding(analysts, "TOPIC", origin, "LITERAL", "DESCRIBE"),
            }
            assert {a.binding for a in third.pending} == gone
            acls.apply(admin, third)
            assert admin.bindings() == before - gone
            assert hand_made in admin.bindings()
            assert acls.plan(admin, [fewer]).pending == ()
        finally:
            admin.delete([hand_made])


def _cli(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "broker.cli", *args],
        capture_output=True,
        text=True,
        env=dict(os.environ),
        cwd=cwd,
        timeout=120,
        check=False,
    )


def _can_read(settings: KafkaSettings, topic: str, timeout_s: float = 30.0) -> bool:
    """Whether the broker lets these settings read partition 0 of ``topic`` (which must hold
    a record), by the broker's answer, never by a timeout.

    True once the record arrives. False once the broker refuses: it leaves the topic out of
    the metadata it lists to this user (no DESCRIBE), or answers the fetch with
    TOPIC_AUTHORIZATION_FAILED (no READ). Either answer comes within a round trip, so a
    topic that WOULD be readable is told apart in the same time; no answer by the
    deadline fails the test.
    """
    consumer = KafkaConsumer(**settings.kafka_python("tests"), group_id=None)
    tp = TopicPartition(topic, 0)
    try:
        if not consumer.partitions_for_topic(topic):  # listed to the admin, who wrote to it
            return False
        consumer.assign([tp])
        consumer.seek_to_beginning(tp)
        deadline = Deadline(timeout_s)
        while not deadline.expired():
            try:
                if consumer.poll(timeout_ms=200):
                    return True
            except TopicAuthorizationFailedError:
                return False
        raise AssertionError(f"{topic}: neither read nor refused within {timeout_s:.0f} s")
    finally:
        consumer.close()


def _write_one_record(producer: KafkaProducer, topics: list[str]) -> None:
    """One record in partition 0 of each topic, so that a read that is allowed shows."""
    for topic in topics:
        producer.send(topic, key=b"probe", value=b"probe", partition=0)
    producer.flush(timeout=30)


def test_users_add_and_rotate_then_the_broker_enforces_the_contract(
    kafka_bootstrap: str,
    kafka_admin: KafkaAdminClient,
    producer_factory: Callable[..., KafkaProducer],
    lyon: Callable[..., Contract],
    tmp_path: Path,
) -> None:
    admin_settings = require_scram(kafka_bootstrap)
    contract = lyon()
    name = contract.consumers[1].principal.removeprefix("User:")  # opendata: availability only
    out = tmp_path / "user.kafka.yaml"
    created = _cli("users", "add", name, "--out", str(out), "--bootstrap", kafka_bootstrap)
    try:
        assert created.returncode == 0, created.stderr
        assert created.stdout == f"{out.resolve()}\n"
        assert out.stat().st_mode & 0o777 == 0o600
        first = KafkaSettings.load(out)
        assert first.password is not None
        secret = first.password.get_secret_value()
        assert secret not in created.stdout + created.stderr
        assert first.bootstrap == admin_settings.bootstrap
        assert first.ssl_cafile == admin_settings.ssl_cafile
        wait_until_authenticates(first)
        again = _cli("users", "add", name, "--out", str(tmp_path / "x.yaml"))
        assert again.returncode == 1 and "users rotate" in again.stderr
        listed = _cli("users", "list")
        assert f"{name}\tSCRAM-SHA-512" in listed.stdout.splitlines()

        # The contract's ACLs: its view yes, another view and the internal topics no.
        names = [s.name for s in topics.contract_topics(contract)]
        with topics.TopicAdmin(kafka_bootstrap) as admin:
            topics.apply(admin, topics.plan(admin, [contract]))
        try:
            applied = _cli("apply", str(contract.source), "--bootstrap", kafka_bootstrap)
            assert applied.returncode == 0, applied.stderr
            assert "ACL(s) to create" in applied.stdout
            allowed = contract.topic_public("availability")
            refused = [
                contract.topic_public("origin_destination"),
                contract.topic_raw("vehicle_events"),
                f"respublica.{contract.id}.state",
            ]
            _write_one_record(producer_factory(), [allowed, *refused])
            # Waited for (the grants reach the broker's authorizer through its metadata log);
            # once it is read, the ACLs of the same `apply` are in force for the refusals.
            wait_for(lambda: _can_read(first, allowed), 30, f"{name} to read {allowed}")
            for topic in refused:
                assert not _can_read(first, topic), topic
            again_applied = _cli("apply", str(contract.source), "--bootstrap", kafka_bootstrap)
            assert "Nothing to do" in again_applied.stdout, again_applied.stdout
        finally:
            kafka_admin.delete_topics(names)

        rotated = _cli("users", "rotate", name, "--out", str(out))
        assert rotated.returncode == 0, rotated.stderr
        second = KafkaSettings.load(out)
        assert second.password is not None
        assert second.password.get_secret_value() != secret
        wait_until_authenticates(second)
        assert not authenticates(as_user(kafka_bootstrap, name, secret))
    finally:
        _cli("users", "remove", name)
    removed = KafkaSettings.load(out)
    wait_for(lambda: not authenticates(removed), 30, f"{name} to be refused")


def test_plan_shows_the_acls_and_changes_nothing(
    kafka_bootstrap: str, lyon: Callable[..., Contract]
) -> None:
    contract = lyon()
    shown = _cli("plan", str(contract.source), "--bootstrap", kafka_bootstrap)
    assert shown.returncode == 0, shown.stderr
    assert (
        f"+ create ALLOW {acls.worker_principal(contract)} READ TOPIC PREFIXED raw." in shown.stdout
    )
    with acls.AclAdmin(kafka_bootstrap) as admin:
        assert not set(acls.contract_bindings(contract)) & admin.bindings()


def test_an_audit_run_as_the_auditor_sees_every_topic_it_checks(
    kafka_bootstrap: str, kafka_admin: KafkaAdminClient, lyon: Callable[..., Contract]
) -> None:
    from broker.audit.run import audit
    from broker.kafka.acls import AUDITOR_PRINCIPAL
    from tests.conftest import LOCAL_BROKER

    if not LOCAL_BROKER:
        pytest.skip("needs the session's own broker (its auditor's client config)")
    contract = lyon()
    with topics.TopicAdmin(kafka_bootstrap) as admin:
        topics.apply(admin, topics.plan(admin, [contract]))
    with acls.AclAdmin(kafka_bootstrap) as admin:
        acls.apply(admin, acls.plan(admin, [contract]))
    user = AUDITOR_PRINCIPAL.removeprefix("User:")
    auditor = KafkaSettings.from_file(LOCAL_BROKER[0].config.client_config(user))
    try:
        report = audit(contract, auditor, audience="public")
        codes = [f.get("code") for f in report.get("findings", [])]
        # Without DESCRIBE on ingest.<c>. the ingest topics looked missing to the auditor.
        assert "topic-missing" not in codes, codes
    finally:
        kafka_admin.delete_topics([spec.name for spec in topics.contract_topics(contract)])
