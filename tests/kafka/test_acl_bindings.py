"""The ACL bindings the contracts imply, and the plan/ledger logic of ``respublica apply``
(pure: no broker). The expected table is written out here, from BRIEF §4, not derived."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest
from pydantic import SecretStr

from broker.cli.contracts import apply_summary
from broker.kafka import acls, users
from broker.kafka.acls import AclActionKind, AclBinding, plan_acls
from broker.kafka.clients import WorkerClients
from broker.kafka.defaults import VALIDATOR_GROUP
from broker.kafka.settings import KafkaSettings
from broker.kafka.topics import ActionKind, Plan, TopicAction, TopicSpec, contract_topics
from contracts import Contract, examples_dir, load_contracts
from contracts.model import Consumer

pytestmark = pytest.mark.unit
NOW = datetime(2026, 6, 1, tzinfo=UTC)


@pytest.fixture(scope="module")
def examples() -> dict[str, Contract]:
    return {c.id: c for c in load_contracts([examples_dir()], now=NOW)}


def _b(principal: str, kind: str, name: str, op: str, pattern: str = "PREFIXED") -> AclBinding:
    return AclBinding(principal, kind, name, pattern, op)


def test_the_micromobility_contract_implies_exactly_these_bindings(
    examples: dict[str, Contract],
) -> None:
    c = "lyon-micromobility"
    worker = f"User:respublica-worker.{c}"
    ingest, auditor = "User:respublica-ingest", "User:respublica-auditor"
    expected = {
        _b("User:provider.scootco", "TOPIC", f"ingest.{c}.", "WRITE"),
        _b("User:provider.scootco", "TOPIC", f"ingest.{c}.", "DESCRIBE"),
        _b(ingest, "TOPIC", f"ingest.{c}.", "READ"),
        _b(ingest, "TOPIC", f"ingest.{c}.", "DESCRIBE"),
        _b(ingest, "TOPIC", f"raw.{c}.", "WRITE"),
        _b(ingest, "TOPIC", f"raw.{c}.", "DESCRIBE"),
        _b(ingest, "TOPIC", f"dlq.{c}.", "WRITE"),
        _b(ingest, "TOPIC", f"dlq.{c}.", "DESCRIBE"),
        _b(ingest, "GROUP", "respublica-validator", "READ"),
        _b(worker, "TOPIC", f"raw.{c}.", "READ"),
        _b(worker, "TOPIC", f"raw.{c}.", "DESCRIBE"),
        _b(worker, "TOPIC", f"public.{c}.", "WRITE"),
        _b(worker, "TOPIC", f"public.{c}.", "DESCRIBE"),
        _b(worker, "TOPIC", f"respublica.{c}.", "READ"),
        _b(worker, "TOPIC", f"respublica.{c}.", "WRITE"),
        _b(worker, "TOPIC", f"respublica.{c}.", "DESCRIBE"),
        _b(worker, "GROUP", f"respublica.{c}.", "READ"),
        _b(worker, "TRANSACTIONAL_ID", f"respublica.{c}.", "WRITE"),
        _b(worker, "TRANSACTIONAL_ID", f"respublica.{c}.", "DESCRIBE"),
        _b(auditor, "CLUSTER", "kafka-cluster", "DESCRIBE", "LITERAL"),
        # existence and retention of ingest topics, never their records
        _b(auditor, "TOPIC", f"ingest.{c}.", "DESCRIBE"),
        _b(auditor, "TOPIC", f"ingest.{c}.", "DESCRIBE_CONFIGS"),
        *(
            _b(auditor, "TOPIC", f"{prefix}.{c}.", op)
            for prefix in ("raw", "dlq", "public", "respublica")
            for op in ("READ", "DESCRIBE", "DESCRIBE_CONFIGS")
        ),
        *(
            _b(principal, "TOPIC", f"public.{c}.{view}", op, "LITERAL")
            for principal, view in (
                ("User:lyon-analysts", "availability"),
                ("User:lyon-analysts", "origin_destination"),
                ("User:lyon-opendata", "availability"),
            )
            for op in ("READ", "DESCRIBE")
        ),
        *(
            _b(principal, "TOPIC", "respublica._contracts", op, "LITERAL")
            for principal in ("User:lyon-analysts", "User:lyon-opendata")
            for op in ("READ", "DESCRIBE")
        ),
    }
    found = acls.contract_bindings(examples[c])
    assert set(found) == expected and len(found) == len(expected)


@pytest.mark.parametrize("cid", ["lyon-micromobility", "bordeaux-navigation", "paris-str"])
def test_every_example_grants_only_what_brief_section_4_allows(
    examples: dict[str, Contract], cid: str
) -> None:
    contract = examples[cid]
    bindings = acls.contract_bindings(contract)
    listed = {(c.principal, contract.topic_public(v)) for c in contract.consumers for v in c.views}
    provider = f"User:provider.{contract.provider.id}"
    worker = acls.worker_principal(contract)
    assert all(b.permission == "ALLOW" and b.host == "*" for b in bindings)
    assert all(b.operation != "ALL" and "*" not in b.principal for b in bindings)
    assert acls.ADMIN_PRINCIPAL not in {b.principal for b in bindings}
    for b in bindings:
        if b.principal == provider:
            assert (b.resource, b.operation in ("WRITE", "DESCRIBE")) == (f"ingest.{cid}.", True)
        elif b.principal not in (acls.INGEST_PRINCIPAL, worker, acls.AUDITOR_PRINCIPAL):
            # A consumer: one listed view or the contracts, literally, read-only.
            assert (b.principal, b.resource) in listed or b.resource == "respublica._contracts"
            assert b.pattern == "LITERAL" and b.operation in ("READ", "DESCRIBE")
    # Who may read each topic: nobody but the workers (and the auditor) reads the internals.
    for spec in contract_topics(contract):
        readers = {
            b.principal for b in bindings if b.operation == "READ" and b.covers_topic(spec.name)
        }
        if spec.name.startswith(("raw.", "respublica.")):
            assert readers == {worker, acls.AUDITOR_PRINCIPAL}
        elif spec.name.startswith("dlq."):
            assert readers == {acls.AUDITOR_PRINCIPAL}
        elif spec.name.startswith("ingest."):
            assert readers == {acls.INGEST_PRINCIPAL}
        else:
            named = {p for p, topic in listed if topic == spec.name}
            assert readers == named | {acls.AUDITOR_PRINCIPAL}


def test_the_groups_and_transactional_ids_in_use_are_covered(
    examples: dict[str, Contract],
) -> None:
    contract = examples["paris-str"]
    bindings = acls.contract_bindings(contract)
    worker = acls.worker_principal(contract)
    clients = WorkerClients(KafkaSettings())

    def allowed(principal: str, kind: str, name: str, op: str) -> bool:
        return any(
            b.principal == principal
            and b.resource_type == kind
            and b.operation == op
            and (name.startswith(b.resource) if b.pattern == "PREFIXED" else name == b.resource)
            for b in bindings
        )

    assert allowed(worker, "GROUP", clients.raw_group(contract.id), "READ")
    assert allowed(worker, "GROUP", clients.merge_group(contract.id), "READ")
    assert clients.raw_group(contract.id) == "respublica.paris-str.raw"
    # Another contract's worker has no right on these groups, nor this one on theirs.
    other_groups = (clients.raw_group("another-contract"), clients.merge_group("another-contract"))
    for group in other_groups:
        assert not allowed(worker, "GROUP", group, "READ")
    every = [b for e in examples.values() for b in acls.contract_bindings(e)]
    assert not any(
        b.principal != worker and b.covers("GROUP", clients.raw_group(contract.id)) for b in every
    )
    # broker/worker/mergeloop.py MergeLoop.adopt: one transactional producer per view.
    for view in contract.views:
        tid = f"respublica.{contract.id}.{view.name}.merger"
        assert allowed(worker, "TRANSACTIONAL_ID", tid, "WRITE")
    assert allowed(acls.INGEST_PRINCIPAL, "GROUP", VALIDATOR_GROUP, "READ")
    other = acls.worker_principal("another-contract")
    assert not allowed(other, "TRANSACTIONAL_ID", f"respublica.{contract.id}.x.merger", "WRITE")


def test_a_binding_text_round_trips_and_the_ledger_keeps_the_last_value() -> None:
    binding = _b("User:lyon-analysts", "TOPIC", "public.c.v", "READ", "LITERAL")
    assert binding.text == "ALLOW User:lyon-analysts READ TOPIC LITERAL public.c.v *"
    assert AclBinding.parse(binding.text) == binding
    with pytest.raises(ValueError, match="canonical"):
        AclBinding.parse("ALLOW User:x READ")
    other = _b("User:x", "GROUP", "g", "READ")
    state = acls.ledger_state(
        [
            (binding.text.encode(), b"c1"),
            (other.text.encode(), b"c1,c2"),
            (b"junk", b"c1"),
            (binding.text.encode(), None),
            (other.text.encode(), b"c2"),
        ]
    )
    assert state == {other: frozenset({"c2"})}


Ledger = dict[AclBinding, frozenset[str]]


def _applied(
    plan: acls.AclPlan, live: set[AclBinding], ledger: Ledger
) -> tuple[set[AclBinding], Ledger]:
    """What the cluster and the ledger hold after ``acls.apply`` (its effect, modelled)."""
    live, ledger = set(live), dict(ledger)
    for action in plan.actions:
        if action.kind is AclActionKind.CREATE:
            live.add(action.binding)
            ledger[action.binding] = action.owners
        elif action.kind is AclActionKind.REMOVE:
            live.discard(action.binding)
            ledger.pop(action.binding, None)
        elif action.ledger_update:
            ledger[action.binding] = action.owners
    return live, ledger


def test_the_plan_creates_then_keeps_then_removes_only_its_own(
    examples: dict[str, Contract],
) -> None:
    contract = examples["lyon-micromobility"]
    hand_made = _b("User:someone", "TOPIC", "public.lyon-micromobility.", "READ")
    made_twice = _b(
        "User:lyon-opendata", "TOPIC", contract.topic_public("availability"), "READ", "LITERAL"
    )
    live: set[AclBinding] = {hand_made, made_twice}
    first = plan_acls(acls.desired_bindings([contract]), live, {}, {contract.id})
    creates = {a.binding for a in first.actions if a.kind is AclActionKind.CREATE}
    assert creates == set(acls.contract_bindings(contract)) - {made_twice}
    kept = next(a for a in first.actions if a.binding == made_twice)
    assert kept.kind is AclActionKind.UNCHANGED and "outside respublica" in kept.note
    assert first.foreign == 1 and "1 other ACL(s) on the cluster left alone" in first.render()
    live, ledger = _applied(first, live, {})
    assert made_twice not in ledger  # never adopted: a later apply will not remove it

    second = plan_acls(acls.desired_bindings([contract]), live, ledger, {contract.id})
    assert second.pending == ()

    # The analysts lose the origin-destination view: only their two bindings on it go.
    fewer = contract.model_copy(
        update={
            "consumers": tuple(
                Consumer(principal=c.principal, views=("availability",)) for c in contract.consumers
            )
        }
    )
    third = plan_acls(acls.desired_bindings([fewer]), live, ledger, {contract.id})
    removed = {a.binding for a in third.actions if a.kind is AclActionKind.REMOVE}
    origin = contract.topic_public("origin_destination")
    assert removed == {
        _b("User:lyon-analysts", "TOPIC", origin, "READ", "LITERAL"),
        _b("User:lyon-analysts", "TOPIC", origin, "DESCRIBE", "LITERAL"),
    }
    assert hand_made not in {a.binding for a in third.actions}
    live, ledger = _applied(third, live, ledger)
    assert hand_made in live and made_twice in live
    assert plan_acls(acls.desired_bindings([fewer]), live, ledger, {contract.id}).pending == ()


def test_a_run_never_removes_the_grants_of_contracts_outside_it(
    examples: dict[str, Contract],
) -> None:
    lyon, paris = examples["lyon-micromobility"], examples["paris-str"]
    both = acls.desired_bindings([lyon, paris])
    shared = _b(acls.INGEST_PRINCIPAL, "GROUP", VALIDATOR_GROUP, "READ")
    assert both[shared] == {lyon.id, paris.id}
    live, ledger = _applied(plan_acls(both, set(), {}, {lyon.id, paris.id}), set(), {})
    assert ledger[shared] == {lyon.id, paris.id}

    only_lyon = plan_acls(acls.desired_bindings([lyon]), live, ledger, {lyon.id})
    assert only_lyon.pending == ()  # paris's bindings are not the run's business

    withdrawn = plan_acls({}, live, ledger, {paris.id})
    removed = {a.binding for a in withdrawn.actions if a.kind is AclActionKind.REMOVE}
    assert removed == set(acls.contract_bindings(paris)) - set(acls.contract_bindings(lyon))
    kept = next(a for a in withdrawn.actions if a.binding == shared)
    assert kept.kind is AclActionKind.UNCHANGED and kept.ledger_update
    live, ledger = _applied(withdrawn, live, ledger)
    assert ledger[shared] == {lyon.id} and shared in live


class _FakeAdmin:
    def __init__(self) -> None:
        self.calls: list[tuple[str, object]] = []

    def record(self, entries: list[tuple[AclBinding, frozenset[str] | None]]) -> None:
        if entries:
            self.calls.append(("record", [(b.resource, o) for b, o in entries]))

    def create(self, bindings: list[AclBinding]) -> None:
        if bindings:
            self.calls.append(("create", [b.resource for b in bindings]))

    def delete(self, bindings: list[AclBinding]) -> None:
        if bindings:
            self.calls.append(("delete", [b.resource for b in bindings]))


def test_apply_records_a_creation_before_it_and_clears_a_removal_after_it() -> None:
    new, old = _b("User:a", "TOPIC", "new.", "READ"), _b("User:a", "TOPIC", "old.", "READ")
    current = plan_acls({new: frozenset({"c"})}, {old}, {old: frozenset({"c"})}, {"c"})
    admin = _FakeAdmin()
    acls.apply(admin, current)  # type: ignore[arg-type]
    assert admin.calls == [
        ("record", [("new.", frozenset({"c"}))]),
        ("create", ["new."]),
        ("delete", ["old."]),
        ("record", [("old.", None)]),
    ]


def _spec(name: str) -> TopicSpec:
    return TopicSpec(name, 1, {"retention.ms": "1"}, "test", "c")


def test_apply_says_what_was_skipped_and_why() -> None:
    blocked = TopicAction(_spec("raw.c.s"), ActionKind.BLOCKED, withheld=("would drop data",))
    summary = apply_summary(Plan((blocked, TopicAction(_spec("dlq.c.s"), ActionKind.UNCHANGED))), 0)
    assert "Nothing to do" not in summary
    assert "Skipped 1 topic(s)" in summary and "raw.c.s: would drop data" in summary
    assert "--allow-skipped" in summary
    # An alteration that also withholds something is a change and a skip.
    both = TopicAction(_spec("raw.c.s"), ActionKind.ALTER, {"k": ("1", "2")}, ("partitions",))
    summary = apply_summary(Plan((both,)), 0, allow_skipped=True)
    assert "Applied 1 change(s): 0 topic(s) created, 1 altered." in summary
    assert "raw.c.s: partitions" in summary and "--allow-skipped" not in summary
    clean = Plan((TopicAction(_spec("dlq.c.s"), ActionKind.UNCHANGED),))
    assert apply_summary(clean, 0) == "Nothing to do: the cluster already matches the contracts."
    assert (
        apply_summary(clean, 3)
        == "Applied 3 change(s): 0 topic(s) created, 0 altered, 3 ACL change(s)."
    )
    assert "no authorizer" in apply_summary(clean, None)
    assert "Nothing to do" not in apply_summary(clean, None)


def test_a_client_config_carries_the_admins_address_and_tls_and_is_private(
    tmp_path: Path,
) -> None:
    cafile = tmp_path / "ca.pem"
    cafile.write_text("not read here")
    admin = KafkaSettings(
        bootstrap="kafka.example:9093",
        security_protocol="SASL_SSL",
        sasl_mechanism="SCRAM-SHA-512",
        username="admin",
        password=SecretStr("admin-secret"),
        ssl_cafile=cafile,
    )
    config = users.client_config(admin, "bordeaux-traffic", "pw")
    assert config == {
        "bootstrap": "kafka.example:9093",
        "security_protocol": "SASL_SSL",
        "sasl_mechanism": "SCRAM-SHA-512",
        "username": "bordeaux-traffic",
        "password": "pw",
        "ssl_cafile": str(cafile.resolve()),
    }
    assert "admin-secret" not in repr(config)
    plain = users.client_config(KafkaSettings(bootstrap="h:1"), "u", "pw")
    assert plain["security_protocol"] == "SASL_PLAINTEXT" and "ssl_cafile" not in plain

    out = users.write_client_config(tmp_path / "u.kafka.yaml", config)
    assert out.stat().st_mode & 0o777 == 0o600
    loaded = KafkaSettings.load(out)
    assert loaded.username == "bordeaux-traffic" and loaded.password is not None
    assert loaded.password.get_secret_value() == "pw"

    def refused() -> None:
        raise users.UserAdminError("refused")

    target = tmp_path / "v.kafka.yaml"
    with pytest.raises(users.UserAdminError, match="refused"):
        users.write_client_config(target, config, refused)
    assert list(tmp_path.glob("*v.kafka.yaml*")) == []


@pytest.mark.parametrize("name", ["", "-x", "a b", "User:x", "x" * 129, "é"])
def test_user_names_are_checked(name: str) -> None:
    with pytest.raises(users.UserAdminError, match="user name"):
        users.check_name(name)
