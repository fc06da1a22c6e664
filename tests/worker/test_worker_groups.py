"""Consumer groups per contract, on the real (secure) broker.

Two copies of the micromobility example (``a`` and ``b``) get their topics, ACLs (from
``respublica apply``'s own plan) and a SCRAM user per worker principal. The worker principal
of ``a`` may join, describe and commit its own groups (``respublica.<a>.raw``, ``.merge``) and
is refused (``GroupAuthorizationFailed``, from the broker) on ``b``'s groups and on the old
shared ones; then the two contracts' workers, each logged in as its own principal, run side
by side with a process that runs both contracts (one raw and one merge loop per contract):
each group holds only its contract's members and topics, and both contracts' releases equal
the oracle. Skipped, with the reason, when the session broker has no authorizer.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer, TopicPartition
from kafka.errors import GroupAuthorizationFailedError, KafkaError
from kafka.structs import OffsetAndMetadata
from pydantic import SecretStr

from broker.deadline import Deadline
from broker.kafka import acls, users
from broker.kafka.clients import WorkerClients, is_outage, is_refusal, subscribe
from broker.kafka.defaults import WORKER_GROUP
from broker.kafka.settings import KafkaSettings
from broker.worker.engine import Engine, WorkerConfig
from broker.worker.keyrecords import MasterKeys
from broker.worker.metrics import WorkerMetrics
from contracts.model import Contract
from tests.kafka.acl_support import require_scram, wait_until_authenticates, withdraw
from tests.worker.support import (
    MASTER_KEY,
    create_topics,
    delete_topics,
    encode_raw,
    expected_windows,
    feed,
    metric_value,
    mobility_events,
    produce_end_of_stream,
    produce_raw,
    read_public,
    unique_contract,
    wait_for,
)

pytestmark = pytest.mark.integration
KEK = MasterKeys(bytes.fromhex(MASTER_KEY))
STREAM = "vehicle_events"
VIEWS = ("availability", "origin_destination")
LEGACY_GROUPS = ("respublica.raw", "respublica.merge")  # shared by every contract before


@dataclass
class Pair:
    """Two applied contracts and each one's worker principal's settings."""

    admin: KafkaSettings
    a: Contract
    b: Contract
    workers: dict[str, KafkaSettings] = field(default_factory=dict)

    def groups(self, contract: Contract) -> tuple[str, str]:
        clients = WorkerClients(self.admin)
        return clients.raw_group(contract.id), clients.merge_group(contract.id)


def _own_topics_visible(settings: KafkaSettings, contract: Contract) -> Callable[[], bool]:
    def check() -> bool:
        consumer = KafkaConsumer(**settings.kafka_python("tests"), group_id=None)
        try:
            return bool(consumer.partitions_for_topic(contract.topic_raw(STREAM)))
        except KafkaError:
            return False
        finally:
            consumer.close()

    return check


@pytest.fixture
def pair(kafka_bootstrap: str, kafka_admin: KafkaAdminClient, tmp_path: Path) -> Iterator[Pair]:
    admin = require_scram(kafka_bootstrap)
    made: list[Contract] = []
    for name in ("a", "b"):
        (tmp_path / name).mkdir()
        made.append(unique_contract(tmp_path / name, "micromobility", partitions=2))
    a, b = made
    result = Pair(admin, a, b)
    names = [acls.worker_principal(c).removeprefix("User:") for c in made]
    created: list[str] = []
    try:
        for contract in made:
            created += create_topics(kafka_bootstrap, contract)
        with acls.AclAdmin(admin) as acl_admin:
            acls.apply(acl_admin, acls.plan(acl_admin, made))
        with users.ScramUsers(admin) as scram:
            for contract, name in zip(made, names, strict=True):
                password = users.new_password()
                scram.upsert(name, password)
                result.workers[contract.id] = admin.model_copy(
                    update={"username": name, "password": SecretStr(password)}
                )
        # Credentials and ACLs reach the broker through its metadata log: wait for both.
        for contract in made:
            wait_until_authenticates(result.workers[contract.id])
            wait_for(_own_topics_visible(result.workers[contract.id], contract), 30, "ACLs")
        yield result
    finally:
        withdraw(kafka_bootstrap, [c.id for c in made])
        with users.ScramUsers(admin) as scram:
            for name in names:
                with contextlib.suppress(users.UserAdminError):
                    scram.remove(name)
        delete_topics(kafka_admin, created)


def _join(settings: KafkaSettings, group: str, topic: str) -> set[TopicPartition]:
    """Join ``group`` subscribed to ``topic``; the partitions assigned (raises a refusal)."""
    consumer = KafkaConsumer(
        **settings.kafka_python("tests"), group_id=group, enable_auto_commit=False
    )
    try:
        consumer.subscribe([topic])
        _await_assignment(consumer, group)
        return set(consumer.assignment())
    finally:
        consumer.close(autocommit=False)


def _await_assignment(consumer: Any, group: str) -> None:
    deadline = Deadline(60)
    while not consumer.assignment():
        if deadline.expired():
            msg = f"no assignment in {group}"
            raise AssertionError(msg)
        consumer.poll(timeout_ms=1000)


def _join_as_loop(settings: KafkaSettings, group: str, topic: str) -> set[TopicPartition]:
    """``_join`` with a worker loop's consumer (aiokafka behind ``AioConsumer``)."""
    consumer = WorkerClients(settings, "tests", loop_client="aiokafka").loop_consumer(
        group_id=group
    )
    try:
        subscribe(consumer, [topic], None)
        _await_assignment(consumer, group)
        return consumer.assignment()
    finally:
        consumer.close()


def _commit(settings: KafkaSettings, group: str, tp: TopicPartition) -> int | None:
    """Commit offset 0 of ``tp`` under ``group`` (no join); what the group then holds."""
    consumer = KafkaConsumer(
        **settings.kafka_python("tests"), group_id=group, enable_auto_commit=False
    )
    try:
        consumer.assign([tp])
        consumer.commit({tp: OffsetAndMetadata(0, "", -1)})
        return consumer.committed(tp)
    finally:
        consumer.close(autocommit=False)


def _describe(settings: KafkaSettings, group: str) -> dict[str, Any]:
    """The broker's description of ``group`` as ``settings``' user; raises its refusal."""
    admin = KafkaAdminClient(**settings.kafka_python("tests"))
    try:
        described: dict[str, Any] = admin.describe_groups([group])[group]
    finally:
        admin.close()
    if described.get("error") and "GroupAuthorizationFailed" in described["error"]:
        raise GroupAuthorizationFailedError(group)
    assert not described.get("error"), described["error"]
    return described


def test_a_contracts_worker_cannot_join_describe_or_commit_another_contracts_groups(
    pair: Pair,
) -> None:
    worker = pair.workers[pair.a.id]
    own_topic = pair.a.topic_raw(STREAM)
    tp = TopicPartition(own_topic, 0)
    own_raw, own_merge = pair.groups(pair.a)
    # Its own groups: join, commit, describe all work (so the refusals below are the groups').
    assert _join(worker, own_raw, own_topic) == {tp, TopicPartition(own_topic, 1)}
    assert _join_as_loop(worker, own_raw, own_topic) == {tp, TopicPartition(own_topic, 1)}
    assert _commit(worker, own_merge, tp) == 0
    assert _describe(worker, own_raw)["group_id"] == own_raw
    # The other contract's groups, and the groups every contract shared before: refused by
    # the broker, each way in, even with the worker's own topic (only the group is foreign).
    for group in (*pair.groups(pair.b), *LEGACY_GROUPS):
        with pytest.raises(GroupAuthorizationFailedError):
            _join(worker, group, own_topic)
        # The loops' aiokafka consumer: a refusal (the loop stops), never an outage.
        with pytest.raises(Exception) as refused:
            _join_as_loop(worker, group, own_topic)
        assert is_refusal(refused.value), type(refused.value).__name__
        assert not is_outage(refused.value)
        with pytest.raises(GroupAuthorizationFailedError):
            _commit(worker, group, tp)
        with pytest.raises(GroupAuthorizationFailedError):
            _describe(worker, group)


def _engine(
    settings: KafkaSettings, worker_id: str, contracts: list[Contract], group: str = WORKER_GROUP
) -> Engine:
    config = WorkerConfig(
        kafka_settings=settings,
        worker_id=worker_id,
        group=group,
        web_port=None,
        checkpoint_interval_s=0.3,
    )
    return Engine(config, contracts, KEK, WorkerMetrics())


def _topics(value: Any) -> set[str]:
    """Every ``topic`` named anywhere in a described member assignment."""
    if isinstance(value, dict):
        found = {str(value["topic"])} if "topic" in value else set()
        return found.union(*(_topics(v) for v in value.values()))
    if isinstance(value, list | tuple):
        return set().union(*(_topics(v) for v in value))
    return set()


def _members(admin: KafkaSettings, group: str) -> dict[str, set[str]]:
    """client id → topics assigned, per member of ``group`` (as the broker describes it)."""
    out: dict[str, set[str]] = {}
    for member in _describe(admin, group)["members"]:
        topics = _topics(member.get("member_assignment"))
        out.setdefault(member["client_id"], set()).update(topics)
    return out


def test_two_contracts_workers_run_side_by_side_each_in_its_own_groups(
    pair: Pair, producer_factory: Callable[..., KafkaProducer], kafka_bootstrap: str
) -> None:
    contracts = {pair.a.id: pair.a, pair.b.id: pair.b}
    events = {pair.a.id: mobility_events(3_000, seed=31), pair.b.id: mobility_events(3_000, 32)}
    expected = {
        (cid, view): expected_windows(contracts[cid], events[cid], view)
        for cid in contracts
        for view in VIEWS
    }
    engines = [_engine(pair.workers[cid], f"own-{cid}", [c]) for cid, c in contracts.items()]
    # One process that runs both contracts (as an admin would): one loop per contract and
    # stage, so it joins each contract's groups separately.
    both = _engine(pair.admin, "both", [pair.a, pair.b])
    engines.append(both)
    try:
        for engine in engines:
            engine.start()
        producer = producer_factory()
        for cid, contract in contracts.items():
            feed(producer, contract, events[cid])

        def done() -> bool:
            for engine in engines:
                assert engine.failure() is None, engine.failure()
            return all(
                len(read_public(kafka_bootstrap, contracts[cid], view).windows) >= len(want)
                for (cid, view), want in expected.items()
            )

        wait_for(done, 180, "every window of both contracts", 1.0)
        for (cid, view), want in expected.items():
            got = read_public(kafka_bootstrap, contracts[cid], view)
            assert got.windows == want, (cid, view)
            assert got.duplicates == 0
        wait_for(lambda: all(e.healthy() for e in engines), 30, "every loop joined")
        for cid, contract in contracts.items():
            raw, merge = pair.groups(contract)
            members = _members(pair.admin, raw)
            # Its own worker and the two-contract process; never the other contract's worker.
            own = WorkerClients(pair.workers[cid], f"worker-own-{cid}").group_client_id(cid)
            two = WorkerClients(pair.admin, "worker-both").group_client_id(cid)
            assert set(members) == {own, two}, members
            raws = {contract.topic_raw(s) for s in contract.streams if contract.views_of(s)}
            assert set().union(*members.values()) == raws
            views = set().union(*_members(pair.admin, merge).values())
            assert views == {f"respublica.{cid}.partials.{v}" for v in VIEWS}
        text = both.metrics.exposition().decode()
        for cid in contracts:  # per-contract assignment gauges of the two-contract process
            held = [
                line
                for line in text.splitlines()
                if line.startswith("respublica_worker_assignment{") and f'contract="{cid}"' in line
            ]
            assert len(held) == 2, held  # stage raw and merge
        assert len(both.loops()) == 4
    finally:
        for engine in engines:
            engine.stop()


def test_workers_in_new_empty_groups_resume_from_the_checkpoints_of_the_old_ones(
    contract_factory: Callable[..., Contract],
    producer_factory: Callable[..., KafkaProducer],
    kafka_bootstrap: str,
) -> None:
    """The upgrade from the shared groups (docs/security.md, "Consumer groups"): the groups'
    committed offsets are hints, so a worker in groups that never committed anything resumes
    from the checkpoints and merger state the old groups' workers left: no event lost, none
    counted twice, no window published twice."""
    contract = contract_factory("micromobility", partitions=2)
    events = mobility_events(4_000, seed=41)
    expected = {view: expected_windows(contract, events, view) for view in VIEWS}
    vehicles = events[STREAM]
    half = len(vehicles) // 2
    admin = KafkaSettings.load(bootstrap=kafka_bootstrap)
    producer = producer_factory()
    topic = contract.topic_raw(STREAM)
    produce_raw(producer, topic, encode_raw(contract, STREAM, vehicles[:half]))

    def folded(engine: Engine) -> float:
        text = engine.metrics.exposition().decode()
        return metric_value(text, "respublica_view_events_total", view="availability")

    old = _engine(admin, "old", [contract], group=f"old-{contract.id}")
    try:
        old.start()
        wait_for(lambda: folded(old) >= half, 90, "the old worker to fold the first half")
    finally:
        old.stop()  # graceful, as the upgrade asks: checkpoints, state, commits
    new = _engine(admin, "new", [contract], group=f"new-{contract.id}")
    try:
        new.start()
        produce_raw(producer, topic, encode_raw(contract, STREAM, vehicles[half:]))
        rest = {s: records for s, records in events.items() if s != STREAM}
        feed(producer, contract, rest)
        produce_end_of_stream(producer, topic, contract.stream(STREAM).partitions)

        def done() -> bool:
            assert new.failure() is None, new.failure()
            return all(
                len(read_public(kafka_bootstrap, contract, view).windows) >= len(want)
                for view, want in expected.items()
            )

        wait_for(done, 120, "every window after the upgrade", 1.0)
        for view, want in expected.items():
            got = read_public(kafka_bootstrap, contract, view)
            assert got.windows == want, view
            assert got.duplicates == 0, view
        # The new groups had no offsets: yet only the second half was folded again.
        assert folded(new) == len(vehicles) - half
    finally:
        new.stop()
