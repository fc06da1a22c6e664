"""The authorization matrix: every principal x every topic family of a contract x read/write,
against what the broker really does (BRIEF §4 "Names", §6 "Security"; docs/security.md).

One copy of the micromobility example (``c``, a unique id) and a second copy (``d``, another
id and provider) get their topics and ACLs from the project's own ``topics``/``acls``
plan+apply, and every principal a SCRAM user (``broker.kafka.users``). The admin writes one
record to one topic of each family of ``c``; then each principal tries to read that record
and to write one of its own. The expectation is written out by hand below from the table in
docs/security.md, not computed by ``broker.kafka.acls``, so a wrong or missing binding there
shows up as a cell that differs. Every deny must be an authorization error from the broker,
every allow a real success (see ``tests/kafka/matrix_support.py``), and an unauthenticated
client must not get in at all. Skipped, with the reason, when the session broker has no
authorizer.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from kafka import KafkaAdminClient, KafkaProducer
from kafka.errors import KafkaError
from pydantic import SecretStr

from broker.deadline import wait_for
from broker.kafka import acls, topics, users
from broker.kafka.settings import KafkaSettings
from contracts import Contract, load_contracts
from contracts.copies import example_data, write_contract
from tests.conftest import LOCAL_BROKER
from tests.kafka.acl_support import require_scram, wait_until_authenticates, withdraw
from tests.kafka.matrix_support import (
    ALLOW,
    DENY,
    REFUSED,
    describe_error,
    end_offset,
    try_read,
    try_write,
)

pytestmark = pytest.mark.integration
NOW = datetime(2026, 11, 26, tzinfo=UTC)
OPS = ("read", "write")

# One topic per family of contract c (stream vehicle_events, view availability); the second
# public view is listed for one consumer only, so it gets its own column.
FAMILIES = (
    "ingest",
    "raw",
    "dlq",
    "public",
    "public-od",
    "partials",
    "state",
    "keys",
)

# Who may do what, from docs/security.md ("The ACLs of a contract <c>"), written out by hand.
# A family not listed for a principal: neither read nor write.
NOTHING: dict[str, str] = {}
EXPECTED: dict[str, dict[str, str]] = {
    # WRITE, DESCRIBE on ingest.<c>. and nothing else: it never reads back its own input.
    "provider of c": {"ingest": "w"},
    "provider of d": NOTHING,
    # READ ingest.<c>.; WRITE raw.<c>. and dlq.<c>.
    "ingest service": {"ingest": "r", "raw": "w", "dlq": "w"},
    # READ raw.<c>.; WRITE public.<c>.; READ, WRITE respublica.<c>.; nothing on ingest or dlq.
    "worker of c": {
        "raw": "r",
        "public": "w",
        "public-od": "w",
        "partials": "rw",
        "state": "rw",
        "keys": "rw",
    },
    "worker of d": NOTHING,
    # READ, DESCRIBE LITERAL on each listed view.
    "consumer analysts (availability, origin_destination)": {"public": "r", "public-od": "r"},
    "consumer opendata (availability)": {"public": "r"},
    # READ on raw., dlq., public., respublica. of c; DESCRIBE only on ingest. (retention
    # checks, never records); no write anywhere.
    "auditor": {
        "raw": "r",
        "dlq": "r",
        "public": "r",
        "public-od": "r",
        "partials": "r",
        "state": "r",
        "keys": "r",
    },
    "unlisted user": NOTHING,
}
UNAUTHENTICATED = ("unauthenticated PLAINTEXT", "unauthenticated TLS without SASL")


def expected(principal: str, family: str, op: str) -> str:
    if principal in UNAUTHENTICATED:
        return REFUSED
    return ALLOW if op[0] in EXPECTED[principal].get(family, "") else DENY


@dataclass
class World:
    """The applied contracts, each family's topic of c with the admin's record, and every
    principal's client settings."""

    admin: KafkaSettings
    contract: Contract
    other: Contract
    topics: dict[str, str]
    markers: dict[str, bytes]
    principals: dict[str, KafkaSettings] = field(default_factory=dict)


def _copy(
    unique: str, suffix: str, provider: str, consumers: list[dict[str, Any]], folder: Path
) -> Contract:
    data = example_data("micromobility")
    data["id"] = f"mx-{unique}{suffix}"
    data["provider"]["id"] = provider
    data["consumers"] = consumers
    folder.mkdir()
    return load_contracts([write_contract(data, folder, "contract.yaml")], now=NOW)[0]


def _service_user(
    admin: KafkaSettings, scram: users.ScramUsers, name: str, made: dict[str, str]
) -> KafkaSettings:
    """A service user's settings: the local broker made it (its password is in the broker's
    client config); on an external cluster it is created here if missing, else skipped."""
    if LOCAL_BROKER:
        password = LOCAL_BROKER[0].settings(name).password
        return admin.model_copy(update={"username": name, "password": password})
    if scram.exists(name):
        pytest.skip(f"{name} exists on the external cluster with a password this test lacks")
    made[name] = users.new_password()
    scram.upsert(name, made[name])
    return admin.model_copy(update={"username": name, "password": SecretStr(made[name])})


def _describable(settings: KafkaSettings, topic: str) -> Callable[[], bool]:
    return lambda: describe_error(settings, topic) is None


@pytest.fixture(scope="module")
def world(kafka_bootstrap: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    admin = require_scram(kafka_bootstrap)
    unique = uuid.uuid4().hex[:8]
    folder = tmp_path_factory.mktemp("matrix")
    analysts, opendata, stranger = (f"mx-{unique}-{n}" for n in ("analysts", "opendata", "x"))
    contract = _copy(
        unique,
        "",
        f"mxp-{unique}",
        [
            {"principal": f"User:{analysts}", "views": ["availability", "origin_destination"]},
            {"principal": f"User:{opendata}", "views": ["availability"]},
        ],
        folder / "c",
    )
    other = _copy(
        unique,
        "-other",
        f"mxq-{unique}",
        [{"principal": f"User:mx-{unique}-other-readers", "views": ["availability"]}],
        folder / "d",
    )
    c = contract.id
    family_topics = {
        "ingest": contract.topic_ingest("vehicle_events"),
        "raw": contract.topic_raw("vehicle_events"),
        "dlq": contract.topic_dlq("vehicle_events"),
        "public": contract.topic_public("availability"),
        "public-od": contract.topic_public("origin_destination"),
        "partials": topics.partials_topic(contract, "availability"),
        "state": topics.state_topic(contract),
        "keys": topics.keys_topic(contract),
    }
    assert set(family_topics) == set(FAMILIES)
    assert family_topics["partials"] == f"respublica.{c}.partials.availability"
    markers = {family: f"admin-{family}-{unique}".encode() for family in FAMILIES}
    created_topics = [s.name for x in (contract, other) for s in topics.contract_topics(x)]
    own_users = {
        "provider of c": acls.provider_principal(contract),
        "provider of d": acls.provider_principal(other),
        "worker of c": acls.worker_principal(contract),
        "worker of d": acls.worker_principal(other),
        "consumer analysts (availability, origin_destination)": f"User:{analysts}",
        "consumer opendata (availability)": f"User:{opendata}",
        "unlisted user": f"User:{stranger}",
    }
    passwords: dict[str, str] = {}
    world = World(admin, contract, other, family_topics, markers)
    try:
        with topics.TopicAdmin(admin) as topic_admin:
            topics.apply(topic_admin, topics.plan(topic_admin, [contract, other]))
        with acls.AclAdmin(admin) as acl_admin:
            acls.apply(acl_admin, acls.plan(acl_admin, [contract, other]))
        with users.ScramUsers(admin) as scram:
            for role, principal in own_users.items():
                name = principal.removeprefix("User:")
                passwords[name] = users.new_password()
                scram.upsert(name, passwords[name])
                world.principals[role] = admin.model_copy(
                    update={"username": name, "password": SecretStr(passwords[name])}
                )
            world.principals["ingest service"] = _service_user(
                admin, scram, acls.INGEST_PRINCIPAL.removeprefix("User:"), passwords
            )
            world.principals["auditor"] = _service_user(
                admin, scram, acls.AUDITOR_PRINCIPAL.removeprefix("User:"), passwords
            )
        unauthenticated = {"sasl_mechanism": None, "username": None, "password": None}
        world.principals[UNAUTHENTICATED[0]] = admin.model_copy(
            update={**unauthenticated, "security_protocol": "PLAINTEXT"}
        )
        world.principals[UNAUTHENTICATED[1]] = admin.model_copy(
            update={**unauthenticated, "security_protocol": "SSL"}
        )
        assert set(world.principals) == set(EXPECTED) | set(UNAUTHENTICATED)

        producer = KafkaProducer(**admin.kafka_python("matrix"), acks="all")
        try:
            sent = [
                producer.send(topic, key=b"admin", value=markers[family], partition=0)
                for family, topic in family_topics.items()
            ]
            for future in sent:
                future.get(timeout=30)
        finally:
            producer.close(timeout=10)

        # SCRAM credentials and ACLs reach the broker through its metadata log: wait for both.
        for role in EXPECTED:
            wait_until_authenticates(world.principals[role])
        for role, family in (
            ("consumer opendata (availability)", "public"),
            ("worker of c", "keys"),
            ("ingest service", "ingest"),
        ):
            wait_for(_describable(world.principals[role], family_topics[family]), 30, role)
        yield world
    finally:
        withdraw(kafka_bootstrap, {contract.id, other.id})
        with contextlib.suppress(KafkaError):
            cleaner = KafkaAdminClient(**admin.kafka_python("matrix"))
            try:
                existing = set(cleaner.list_topics())
                cleaner.delete_topics([t for t in created_topics if t in existing])
            finally:
                cleaner.close()
        with users.ScramUsers(admin) as scram:
            for name in passwords:
                with contextlib.suppress(users.UserAdminError):
                    scram.remove(name)


def _observe(world: World, principal: str, family: str, op: str) -> str:
    settings, topic = world.principals[principal], world.topics[family]
    if op == "read":
        return try_read(settings, topic, world.markers[family])
    return try_write(settings, topic, f"{principal}-{family}".encode())


def test_every_principal_reads_and_writes_exactly_what_the_contract_grants(world: World) -> None:
    cells = [(p, f, op) for p in world.principals for f in FAMILIES for op in OPS]
    with ThreadPoolExecutor(max_workers=24) as pool:
        observed = list(pool.map(lambda cell: _observe(world, *cell), cells))
    mismatches = [
        f"{p} x {f} ({world.topics[f]}) x {op}: expected {expected(p, f, op)}, got {got}"
        for (p, f, op), got in zip(cells, observed, strict=True)
        if got != expected(p, f, op)
    ]
    assert not mismatches, (
        f"{len(mismatches)} of {len(cells)} cells differ from docs/security.md:\n"
        + "\n".join(mismatches)
    )


@pytest.mark.parametrize("forger", ["provider of c", "unlisted user"])
@pytest.mark.parametrize("family", ["public", "keys"])
def test_a_forged_public_or_key_record_is_refused_by_the_broker(
    world: World, forger: str, family: str
) -> None:
    topic = world.topics[family]
    before = end_offset(world.admin, topic)
    outcome = try_write(world.principals[forger], topic, b"forged: not from the worker")
    assert outcome == DENY, f"{forger} writing {topic}: {outcome}"
    assert end_offset(world.admin, topic) == before, f"a record from {forger} reached {topic}"
