"""Who may do what on the cluster, derived from the contracts: principals and ACL bindings.

``contract_bindings`` lists the ALLOW bindings one contract implies (BRIEF §4; the table and
the reason for each grant are in ``docs/security.md``). ``plan`` compares them with the
cluster's ACLs and with the ledger of the bindings ``apply`` created (``respublica._acls``, a
compacted topic: key the binding's text, value the contracts that imply it, a tombstone once
removed); ``apply`` creates what is missing and removes only ledger bindings no contract of
the run implies any more. An ACL respublica did not create is never touched.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from enum import Enum
from typing import Any

from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from kafka.admin import (
    ACL,
    ACLFilter,
    ACLOperation,
    ACLPermissionType,
    ACLResourcePatternType,
    NewTopic,
    ResourcePattern,
    ResourcePatternFilter,
    ResourceType,
)
from kafka.errors import KafkaError, SecurityDisabledError

from broker.kafka.admin import AdminSession
from broker.kafka.catalogue import CATALOGUE_TOPIC
from broker.kafka.clients import read_partitions
from broker.kafka.defaults import VALIDATOR_GROUP, worker_group_prefix
from contracts.errors import RespublicaError
from contracts.model import Contract

ADMIN_PRINCIPAL = "User:admin"
INGEST_PRINCIPAL = "User:respublica-ingest"
AUDITOR_PRINCIPAL = "User:respublica-auditor"
LEDGER_TOPIC = "respublica._acls"
CLUSTER_RESOURCE = "kafka-cluster"
INTERNAL_PREFIXES = ("raw.", "dlq.", "respublica.")
_LEDGER_CONFIGS = {"cleanup.policy": "compact", "retention.ms": "-1"}


class AclAdminError(RespublicaError):
    """The cluster refused or could not answer an ACL request."""


class NoAuthorizer(RespublicaError):
    """The cluster runs without an authorizer: ACLs are neither listed nor enforced."""


def provider_principal(contract: Contract) -> str:
    """``User:provider.<provider id>``: the platform that writes ``ingest.<c>.``."""
    return f"User:provider.{contract.provider.id}"


def worker_principal(contract: Contract | str) -> str:
    """``User:respublica-worker.<c>``: the policy worker of one contract."""
    cid = contract if isinstance(contract, str) else contract.id
    return f"User:respublica-worker.{cid}"


@dataclass(frozen=True, order=True)
class AclBinding:
    """One ACL entry in plain strings (kafka-python's enum names), comparable and hashable."""

    principal: str
    resource_type: str  # TOPIC, GROUP, CLUSTER, TRANSACTIONAL_ID
    resource: str
    pattern: str  # LITERAL or PREFIXED
    operation: str  # READ, WRITE, DESCRIBE, DESCRIBE_CONFIGS, ALL...
    permission: str = "ALLOW"
    host: str = "*"

    @property
    def text(self) -> str:
        """The canonical text (the ledger's key): ``ALLOW User:x READ TOPIC PREFIXED raw.c. *``."""
        return " ".join(
            (
                self.permission,
                self.principal,
                self.operation,
                self.resource_type,
                self.pattern,
                self.resource,
                self.host,
            )
        )

    @classmethod
    def parse(cls, text: str) -> AclBinding:
        """The binding of a canonical text; ``ValueError`` if it is not one."""
        parts = text.split(" ")
        if len(parts) != 7:
            msg = "not a canonical ACL binding text"
            raise ValueError(msg)
        permission, principal, operation, resource_type, pattern, resource, host = parts
        return cls(principal, resource_type, resource, pattern, operation, permission, host)

    @classmethod
    def from_acl(cls, acl: Any) -> AclBinding:
        """A kafka-python ``ACL`` as a binding."""
        resource = acl.resource_pattern
        return cls(
            str(acl.principal),
            _name(resource.resource_type),
            str(resource.resource_name),
            _name(resource.pattern_type),
            _name(acl.operation),
            _name(acl.permission_type),
            str(acl.host),
        )

    def to_acl(self) -> ACL:
        """The kafka-python ``ACL`` to create (or, as a filter, to delete exactly this one)."""
        return ACL(
            principal=self.principal,
            host=self.host,
            operation=ACLOperation[self.operation],
            permission_type=ACLPermissionType[self.permission],
            resource_pattern=ResourcePattern(
                ResourceType[self.resource_type],
                self.resource,
                ACLResourcePatternType[self.pattern],
            ),
        )

    def covers_topic(self, topic: str) -> bool:
        """Whether this binding's resource is ``topic`` (by name, prefix or ``*``)."""
        return self.covers("TOPIC", topic)

    def covers(self, resource_type: str, name: str) -> bool:
        """Whether this binding's resource is ``name`` of ``resource_type`` (by name, prefix
        or ``*``)."""
        if self.resource_type != resource_type:
            return False
        if self.pattern == "PREFIXED":
            return name.startswith(self.resource)
        return self.resource in (name, "*")


def _name(value: Any) -> str:
    return str(getattr(value, "name", value))


def _grant(
    principal: str, resource_type: str, resource: str, *operations: str, pattern: str = "PREFIXED"
) -> list[AclBinding]:
    return [AclBinding(principal, resource_type, resource, pattern, op) for op in operations]


def contract_bindings(contract: Contract) -> list[AclBinding]:
    """Every ALLOW binding the contract implies, sorted (see ``docs/security.md``)."""
    c = contract.id
    ingest, raw, dlq = f"ingest.{c}.", f"raw.{c}.", f"dlq.{c}."
    public, internal = f"public.{c}.", f"respublica.{c}."
    worker = worker_principal(contract)
    found = [
        *_grant(provider_principal(contract), "TOPIC", ingest, "WRITE", "DESCRIBE"),
        *_grant(INGEST_PRINCIPAL, "TOPIC", ingest, "READ", "DESCRIBE"),
        *_grant(INGEST_PRINCIPAL, "TOPIC", raw, "WRITE", "DESCRIBE"),
        *_grant(INGEST_PRINCIPAL, "TOPIC", dlq, "WRITE", "DESCRIBE"),
        *_grant(INGEST_PRINCIPAL, "GROUP", VALIDATOR_GROUP, "READ"),
        *_grant(worker, "TOPIC", raw, "READ", "DESCRIBE"),
        *_grant(worker, "TOPIC", public, "WRITE", "DESCRIBE"),
        *_grant(worker, "TOPIC", internal, "READ", "WRITE", "DESCRIBE"),
        # Its own groups only (<stem>.<c>.raw, .merge): no say in another contract's assignment.
        *_grant(worker, "GROUP", worker_group_prefix(c), "READ"),
        *_grant(worker, "TRANSACTIONAL_ID", internal, "WRITE", "DESCRIBE"),
        *_grant(AUDITOR_PRINCIPAL, "CLUSTER", CLUSTER_RESOURCE, "DESCRIBE", pattern="LITERAL"),
    ]
    for prefix in (raw, dlq, public, internal):
        found += _grant(AUDITOR_PRINCIPAL, "TOPIC", prefix, "READ", "DESCRIBE", "DESCRIBE_CONFIGS")
    # The audit checks that ingest topics exist with the contract's retention; it never
    # reads their records (raw holds what was accepted).
    found += _grant(AUDITOR_PRINCIPAL, "TOPIC", ingest, "DESCRIBE", "DESCRIBE_CONFIGS")
    for consumer in contract.consumers:
        for view in consumer.views:
            topic = contract.topic_public(view)
            found += _grant(
                consumer.principal, "TOPIC", topic, "READ", "DESCRIBE", pattern="LITERAL"
            )
        # The contracts themselves (public documents, written by the admin only), so that an
        # analyst reads a view with credentials alone (broker/kafka/catalogue.py).
        found += _grant(
            consumer.principal, "TOPIC", CATALOGUE_TOPIC, "READ", "DESCRIBE", pattern="LITERAL"
        )
    return sorted(set(found))


def desired_bindings(contracts: Iterable[Contract]) -> dict[AclBinding, frozenset[str]]:
    """Every binding the contracts imply, with the ids of the contracts implying it."""
    owners: dict[AclBinding, set[str]] = {}
    for contract in contracts:
        for binding in contract_bindings(contract):
            owners.setdefault(binding, set()).add(contract.id)
    return {binding: frozenset(ids) for binding, ids in owners.items()}


class AclActionKind(Enum):
    CREATE = "create"
    REMOVE = "remove"
    UNCHANGED = "unchanged"


@dataclass(frozen=True)
class AclAction:
    """What ``apply`` would do to one binding; ``owners`` is the ledger value it leaves."""

    binding: AclBinding
    kind: AclActionKind
    owners: frozenset[str] = frozenset()
    recorded: frozenset[str] | None = None  # the ledger's value now (None: not in the ledger)
    note: str = ""

    @property
    def ledger_update(self) -> bool:
        """Whether ``apply`` writes the ledger for this binding."""
        if self.kind is AclActionKind.REMOVE:
            return True
        return self.recorded is not None and self.recorded != self.owners

    def describe(self) -> str:
        sign = {"create": "+ create", "remove": "- remove", "unchanged": "= keep  "}
        note = f" ({self.note})" if self.note else ""
        return f"{sign[self.kind.value]} {self.binding.text}{note}"


@dataclass(frozen=True)
class AclPlan:
    """The ACL actions of a run, and how many of the cluster's ACLs are not respublica's."""

    actions: tuple[AclAction, ...]
    foreign: int = 0

    @property
    def pending(self) -> tuple[AclAction, ...]:
        """Actions that change the cluster or the ledger."""
        return tuple(
            a for a in self.actions if a.kind is not AclActionKind.UNCHANGED or a.ledger_update
        )

    def render(self) -> str:
        lines = [action.describe() for action in self.actions]
        counts = {kind: sum(a.kind is kind for a in self.actions) for kind in AclActionKind}
        lines.append(
            f"{counts[AclActionKind.CREATE]} ACL(s) to create, "
            f"{counts[AclActionKind.REMOVE]} to remove, "
            f"{counts[AclActionKind.UNCHANGED]} unchanged; "
            f"{self.foreign} other ACL(s) on the cluster left alone"
        )
        return "\n".join(lines)


def plan_acls(
    desired: Mapping[AclBinding, frozenset[str]],
    cluster: Iterable[AclBinding],
    ledger: Mapping[AclBinding, frozenset[str]],
    scope: Iterable[str],
) -> AclPlan:
    """Compare the contracts' bindings with the cluster's and the ledger's (pure).

    ``scope`` holds the ids of the contracts of this run: a ledger binding is removed only
    when every contract recorded for it is in the run and none of them implies it now, so
    applying one contract never removes the grants of another.
    """
    live = set(cluster)
    run = frozenset(scope)
    actions = []
    for binding in sorted(set(desired) | set(ledger)):
        recorded = ledger.get(binding)
        owners = (recorded or frozenset()) - run | desired.get(binding, frozenset())
        if binding in desired:
            if binding not in live:
                actions.append(AclAction(binding, AclActionKind.CREATE, owners, recorded))
            else:
                note = "" if recorded is not None else "made outside respublica, left as it is"
                actions.append(AclAction(binding, AclActionKind.UNCHANGED, owners, recorded, note))
        elif owners:  # recorded for contracts outside this run
            actions.append(AclAction(binding, AclActionKind.UNCHANGED, owners, recorded))
        else:
            note = "" if binding in live else "already gone; clearing the ledger"
            actions.append(AclAction(binding, AclActionKind.REMOVE, owners, recorded, note))
    foreign = len(live - set(desired) - set(ledger))
    return AclPlan(tuple(actions), foreign)


class AclAdmin(AdminSession):
    """The cluster's ACLs and the ledger, with Kafka errors translated (never a secret)."""

    role = "acls"
    error = AclAdminError

    def bindings(self) -> set[AclBinding]:
        """Every ACL of the cluster; ``NoAuthorizer`` when there is no authorizer."""
        every = ACLFilter(
            principal=None,
            host=None,
            operation=ACLOperation.ANY,
            permission_type=ACLPermissionType.ANY,
            resource_pattern=ResourcePatternFilter(
                ResourceType.ANY, None, ACLResourcePatternType.ANY
            ),
        )
        try:
            found, _ = self._admin.describe_acls(every)
        except SecurityDisabledError as exc:
            msg = "no authorizer: ACLs not enforced"
            raise NoAuthorizer(msg) from exc
        except KafkaError as exc:
            msg = f"listing the cluster's ACLs failed: {type(exc).__name__}"
            raise AclAdminError(msg) from exc
        return {AclBinding.from_acl(acl) for acl in found}

    def ledger(self) -> dict[AclBinding, frozenset[str]]:
        """The bindings ``apply`` created and still holds, with their contracts."""
        if LEDGER_TOPIC not in set(self._admin.list_topics()):
            return {}
        consumer = KafkaConsumer(
            **self.kafka.kafka_python("acls"), group_id=None, enable_auto_commit=False
        )
        try:
            partitions = consumer.partitions_for_topic(LEDGER_TOPIC) or set()
            tps = [TopicPartition(LEDGER_TOPIC, p) for p in sorted(partitions)]
            records = read_partitions(consumer, tps) if tps else {}
        except KafkaError as exc:
            msg = f"reading {LEDGER_TOPIC} failed: {type(exc).__name__}"
            raise AclAdminError(msg) from exc
        finally:
            consumer.close()
        return ledger_state(
            (r.key, r.value) for tp in tps for r in records[tp] if r.key is not None
        )

    def record(self, entries: Sequence[tuple[AclBinding, frozenset[str] | None]]) -> None:
        """Write ledger records (``None``: a tombstone), creating the topic if missing."""
        if not entries:
            return
        if LEDGER_TOPIC not in set(self._admin.list_topics()):
            topic = NewTopic(LEDGER_TOPIC, 1, 1, topic_configs=dict(_LEDGER_CONFIGS))
            try:
                self._admin.create_topics([topic])
            except KafkaError as exc:
                msg = f"creating {LEDGER_TOPIC} failed: {type(exc).__name__}"
                raise AclAdminError(msg) from exc
        producer = KafkaProducer(**self.kafka.kafka_python("acls"), acks="all")
        try:
            sent = [
                producer.send(
                    LEDGER_TOPIC,
                    key=binding.text.encode(),
                    value=None if owners is None else ",".join(sorted(owners)).encode(),
                )
                for binding, owners in entries
            ]
            for future in sent:
                future.get(timeout=30)
        except KafkaError as exc:
            msg = f"writing {LEDGER_TOPIC} failed: {type(exc).__name__}"
            raise AclAdminError(msg) from exc
        finally:
            producer.close(timeout=10)

    def create(self, bindings: Sequence[AclBinding]) -> None:
        if not bindings:
            return
        try:
            result = self._admin.create_acls([b.to_acl() for b in bindings])
        except KafkaError as exc:
            msg = f"creating ACLs failed: {type(exc).__name__}"
            raise AclAdminError(msg) from exc
        if result["failed"]:
            errors = sorted({error.__name__ for error in result["failed"]})
            msg = f"creating {len(result['failed'])} ACL(s) failed: {', '.join(errors)}"
            raise AclAdminError(msg)

    def delete(self, bindings: Sequence[AclBinding]) -> None:
        if not bindings:
            return
        try:
            results = self._admin.delete_acls([b.to_acl() for b in bindings])
        except KafkaError as exc:
            msg = f"removing ACLs failed: {type(exc).__name__}"
            raise AclAdminError(msg) from exc
        errors = sorted({error.__name__ for _, _, error in results if error.errno != 0})
        if errors:
            msg = f"removing ACLs failed: {', '.join(errors)}"
            raise AclAdminError(msg)


def ledger_state(records: Iterable[tuple[bytes, bytes | None]]) -> dict[AclBinding, frozenset[str]]:
    """The ledger's content from its records in order: the last value per key wins."""
    state: dict[AclBinding, frozenset[str]] = {}
    for key, value in records:
        try:
            binding = AclBinding.parse(key.decode("utf-8"))
            owners = None if value is None else value.decode("utf-8")
        except (UnicodeDecodeError, ValueError):
            continue  # not ours to interpret; never acted upon
        if owners is None:
            state.pop(binding, None)
        else:
            state[binding] = frozenset(v for v in owners.split(",") if v)
    return state


def plan(admin: AclAdmin, contracts: Sequence[Contract]) -> AclPlan:
    """The contracts' bindings against the cluster; ``NoAuthorizer`` without an authorizer."""
    live = admin.bindings()
    return plan_acls(desired_bindings(contracts), live, admin.ledger(), {c.id for c in contracts})


def withdrawal_plan(admin: AclAdmin, contract_ids: Iterable[str]) -> AclPlan:
    """The plan that removes what ``apply`` created for contracts no longer in force
    (bindings other contracts still imply stay)."""
    live = admin.bindings()
    return plan_acls({}, live, admin.ledger(), contract_ids)


def apply(admin: AclAdmin, current: AclPlan) -> AclPlan:
    """Carry out a plan: record, create, remove, then clear the ledger of what was removed.

    A creation is recorded before it is made and a removal cleared after it is done, so an
    interrupted run leaves nothing respublica made outside the ledger.
    """
    creates = [a for a in current.actions if a.kind is AclActionKind.CREATE]
    removes = [a for a in current.actions if a.kind is AclActionKind.REMOVE]
    updates = [a for a in current.actions if a.kind is AclActionKind.UNCHANGED and a.ledger_update]
    admin.record([(a.binding, a.owners) for a in creates + updates])
    admin.create([a.binding for a in creates])
    admin.delete([a.binding for a in removes])  # one already gone matches nothing
    admin.record([(a.binding, None) for a in removes])
    return current
