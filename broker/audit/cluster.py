"""Terms vs reality on the cluster: topic configs, pseudonym keys, ACLs.

* Topics: every topic ``broker.kafka.topics.contract_topics`` derives from the contract must exist
  with its configs; a retention or cleanup policy other than the contract's is a violation
  (data kept longer, or dropped earlier, than signed), another managed config a warning.
* Keys (``respublica.<c>.keys``, see ``broker.worker.keystore``): the epochs whose key is
  stored, the
  epochs shredded (tombstoned), the destruction floor. A key stored below the floor is a
  violation; a key past ``key_retention`` at the latest event time is a warning (the worker
  shreds by event-time progress of every view, so an idle view legitimately delays it).
* ACLs, against the bindings ``broker.kafka.acls.contract_bindings`` derives from the
  contract (BRIEF §6: anything wider is a violation). Violations: no authorizer; ACLs that
  cannot be listed; any grant on the contract's ``ingest.``, ``raw.``, ``dlq.`` or
  ``respublica.`` topics beyond those bindings (any operation, DESCRIBE included: offsets
  count events); reading a ``public.`` view the contract does not list for the principal;
  writing (or deleting, altering) a ``public.`` topic other than as the contract's worker;
  any of these granted to ``User:*``. Consumer groups: any grant on the contract's worker
  groups (``respublica.<c>.raw``, ``.merge``) to another principal (it could join them, lead
  them and assign this contract's partitions to nobody), and any group grant of the contract's
  worker beyond ``respublica.<c>.`` (it could do the same to another contract). A consumer
  without its read grant is a warning.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from broker.audit.model import Findings
from broker.audit.read import AclState, TopicRead
from broker.kafka import acls, topics
from broker.kafka.acls import AclBinding
from broker.kafka.defaults import WORKER_STAGES, worker_group, worker_group_prefix
from contracts.durations import format_duration
from contracts.model import Contract

SECTION = "terms"
CONTRACTUAL_CONFIGS = ("retention.ms", "cleanup.policy")
READ_OPERATIONS = frozenset({"READ", "ALL"})
MODIFY_OPERATIONS = frozenset({"WRITE", "ALL", "DELETE", "ALTER", "ALTER_CONFIGS", "CREATE"})
WILDCARD = "User:*"


def check_topics(
    contract: Contract,
    partitions: Mapping[str, int],
    configs: Mapping[str, Mapping[str, str]],
    findings: Findings,
) -> list[dict[str, Any]]:
    """One row per (topic, managed config): the contract's value and the cluster's."""
    rows: list[dict[str, Any]] = []
    for spec in topics.contract_topics(contract):
        if spec.name not in partitions:
            findings.violation(
                SECTION, "topic-missing", f"topic {spec.name} does not exist", spec.name
            )
            rows.append(
                {
                    "topic": spec.name,
                    "config": "(topic)",
                    "contract": "exists",
                    "cluster": "missing",
                    "ok": False,
                }
            )
            continue
        if partitions[spec.name] != spec.partitions:
            findings.warning(
                SECTION,
                "partitions",
                (
                    f"topic {spec.name} has {partitions[spec.name]} partitions, the contract "
                    f"says {spec.partitions}"
                ),
                spec.name,
            )
        live = configs.get(spec.name, {})
        for key, expected in sorted(spec.configs.items()):
            actual = live.get(key)
            ok = actual == expected
            rows.append(
                {
                    "topic": spec.name,
                    "config": key,
                    "contract": expected,
                    "cluster": actual,
                    "ok": ok,
                }
            )
            if ok:
                continue
            message = f"topic {spec.name}: {key} is {actual}, the contract says {expected}"
            if key in CONTRACTUAL_CONFIGS:
                findings.violation(SECTION, "topic-config", message, spec.name)
            else:
                findings.warning(SECTION, "topic-config", message, spec.name)
    return rows


def check_keys(
    contract: Contract, keys: TopicRead, latest_event_ms: int | None, findings: Findings
) -> dict[str, Any]:
    """Which pseudonym keys are stored, which were shredded, against the key retention."""
    latest: dict[str, bytes | None] = {}
    floor: int | None = None
    for record in keys.all():
        if record.key is None:
            continue
        name = record.key.decode("utf-8", "replace")
        latest[name] = record.value
        kind, _, rest = name.partition("|")
        if kind == "floor" and record.value is not None and rest.lstrip("-").isdigit():
            floor = int(rest) if floor is None else max(floor, int(rest))
    stored: set[int] = set()
    shredded: set[int] = set()
    for name, value in latest.items():
        kind, _, rest = name.partition("|")
        epoch_text = rest.partition("|")[0]
        if kind != "pseudonym" or not epoch_text.lstrip("-").isdigit():
            continue
        (shredded if value is None else stored).add(int(epoch_text))
    shredded -= stored
    policy = contract.pseudonymisation
    rotation_ms = int(policy.rotation.total_seconds() * 1000)
    floor_text = "" if floor is None else f"epoch {floor} ({_day(floor, rotation_ms)})"
    for epoch in sorted(e for e in stored if floor is not None and e < floor):
        findings.violation(
            SECTION,
            "key-not-destroyed",
            (
                f"the pseudonym key of epoch {epoch} ({_day(epoch, rotation_ms)}) is still stored "
                f"below the destruction floor, {floor_text}"
            ),
            keys.topic,
        )
    due = None
    if latest_event_ms is not None:
        due = (latest_event_ms - int(policy.key_retention.total_seconds() * 1000)) // rotation_ms
        overdue = sorted(e for e in stored if e < due)
        if overdue:
            findings.warning(
                SECTION,
                "key-past-retention",
                (
                    f"{len(overdue)} pseudonym key(s) older than the key retention "
                    f"({format_duration(policy.key_retention)}) at the latest event time are "
                    f"still stored: epochs "
                    f"{', '.join(str(e) for e in overdue)}"
                ),
                keys.topic,
            )
    return {
        "topic": keys.topic,
        "rotation": format_duration(policy.rotation),
        "key_retention": format_duration(policy.key_retention),
        "epochs_stored": [{"epoch": e, "from": _day(e, rotation_ms)} for e in sorted(stored)],
        "epochs_destroyed": [{"epoch": e, "from": _day(e, rotation_ms)} for e in sorted(shredded)],
        "destruction_floor": floor,
        "destroy_below_by_retention": due,
        "noise_key": any(n.startswith("noise|") and v is not None for n, v in latest.items()),
    }


def check_acls(contract: Contract, state: AclState, findings: Findings) -> dict[str, Any]:
    """The cluster's topic ACLs against what the contract implies (``acls.contract_bindings``)."""
    if not state.enforced:
        if state.error:
            message = f"the cluster's ACLs could not be listed ({state.error})"
            findings.violation(SECTION, "acls-unreadable", message)
        else:
            findings.violation(SECTION, "acls-not-enforced", "no authorizer: ACLs not enforced")
        return {"enforced": False, "error": state.error, "grants": [], "groups": []}
    names = [spec.name for spec in topics.contract_topics(contract)]
    expected = acls.contract_bindings(contract)
    consumers = {c.principal for c in contract.consumers}
    grants = acl_grants(state.bindings, names)
    for principal, topic, operation in sorted(grants):
        if any(
            b.principal == principal and b.operation == operation and b.covers_topic(topic)
            for b in expected
        ):
            continue
        flagged = _overreach(principal, topic, operation, consumers)
        if flagged is not None:
            findings.violation(SECTION, flagged[0], flagged[1], topic)
    readers = {(c.principal, contract.topic_public(v)) for c in contract.consumers for v in c.views}
    for principal, topic in sorted(readers):
        if (principal, topic, "READ") not in grants:
            message = f"{principal} has no read grant on {topic}"
            findings.warning(SECTION, "acl-missing", message, topic)
    table: dict[tuple[str, str], list[str]] = {}
    for principal, topic, operation in sorted(grants):
        table.setdefault((principal, topic), []).append(operation)
    return {
        "enforced": True,
        "error": "",
        "grants": [
            {"principal": p, "topic": t, "operations": ops} for (p, t), ops in sorted(table.items())
        ],
        "groups": check_groups(contract, state.bindings, findings),
    }


def contract_groups(contract: Contract) -> list[str]:
    """The consumer groups of the contract's workers under the default stem."""
    return [worker_group(contract.id, stage) for stage in WORKER_STAGES]


def check_groups(
    contract: Contract, bindings: list[AclBinding], findings: Findings
) -> list[dict[str, Any]]:
    """Group grants that touch the contract: only its worker on its groups, and its worker on
    nothing else (``acl-group-grant``, ``acl-worker-group``), and its worker on each of them
    (``acl-worker-group-missing``, a warning: a service failure, not a leak). Rows: who may
    use its groups."""
    worker = acls.worker_principal(contract)
    own = worker_group_prefix(contract.id)
    groups = contract_groups(contract)
    rows: dict[tuple[str, str], set[str]] = {}
    for b in bindings:
        if b.resource_type != "GROUP" or b.permission != "ALLOW":
            continue
        covered = [g for g in groups if b.covers("GROUP", g) and not _denied(bindings, b, g)]
        for group in covered:
            rows.setdefault((b.principal, group), set()).add(b.operation)
        who = "every principal (User:*)" if b.principal == WILDCARD else b.principal
        pattern = "prefixed" if b.pattern == "PREFIXED" else "named"
        if b.principal == worker and not b.resource.startswith(own):
            message = (
                f"{who} may {b.operation} groups {pattern} {b.resource}, beyond its own "
                f"({own}): it could join another contract's groups and assign its partitions"
            )
            findings.violation(SECTION, "acl-worker-group", message, b.resource)
        elif b.principal != worker and covered:
            message = (
                f"{who} may {b.operation} group {covered[0]}, a group of this contract's "
                "workers: it could join it and assign their partitions to nobody"
            )
            findings.violation(SECTION, "acl-group-grant", message, covered[0])
    for group in groups:
        if not rows.get((worker, group), set()) & {"READ", "ALL"}:
            message = (
                f"{worker} may not use group {group}: the contract's workers cannot join it "
                "and nothing is published (`respublica contracts apply` grants it)"
            )
            findings.warning(SECTION, "acl-worker-group-missing", message, group)
    return [
        {"principal": p, "group": g, "operations": sorted(ops)}
        for (p, g), ops in sorted(rows.items())
    ]


def _denied(bindings: list[AclBinding], allow: AclBinding, group: str) -> bool:
    """Whether a DENY of the same principal (or of ``User:*``) takes ``allow`` back (from
    every host: a DENY from one host leaves the grant open from the others)."""
    return any(
        d.permission == "DENY"
        and d.host == "*"
        and d.principal in (allow.principal, WILDCARD)
        and d.operation in (allow.operation, "ALL")
        and d.covers("GROUP", group)
        for d in bindings
    )


def _overreach(
    principal: str, topic: str, operation: str, consumers: set[str]
) -> tuple[str, str] | None:
    """The finding code and message of a grant the contract does not imply, if it matters.

    Anything on ``ingest.``, ``raw.``, ``dlq.`` and ``respublica.`` topics matters (even
    DESCRIBE: offsets count events); on ``public.`` topics, reading and modifying do.
    """
    who = "every principal (User:*)" if principal == WILDCARD else principal
    if topic.startswith("public."):
        if operation in READ_OPERATIONS - {"ALL"}:
            code = "acl-extra-reader"
            message = f"{who} may read {topic}, the contract does not name it for that view"
        elif operation in MODIFY_OPERATIONS:
            code = "acl-public-writer"
            message = f"{who} may {operation} {topic}; only the contract's worker writes it"
        else:
            return None
    elif principal in consumers:
        code = "acl-internal-reader"
        message = f"{who}, a beneficiary's principal, may {operation} non-public topic {topic}"
    elif topic.startswith(acls.INTERNAL_PREFIXES):
        code = "acl-internal-grant"
        message = f"{who} may {operation} internal topic {topic}; the contract does not grant it"
    else:
        code = "acl-ingest-grant"
        message = f"{who} may {operation} provider input {topic}; the contract does not grant it"
    return ("acl-wildcard" if principal == WILDCARD else code), message


def acl_grants(bindings: list[AclBinding], names: list[str]) -> set[tuple[str, str, str]]:
    """(principal, topic, operation) with an ALLOW among ``names`` (a DENY of the same
    principal, or of ``User:*``, for the operation or ALL wins)."""
    topic_bindings = [b for b in bindings if b.resource_type == "TOPIC"]
    allow = {
        (b.principal, n, b.operation)
        for b in topic_bindings
        if b.permission == "ALLOW"
        for n in names
        if b.covers_topic(n)
    }
    denied = [b for b in topic_bindings if b.permission == "DENY" and b.host == "*"]

    def is_denied(principal: str, name: str, operation: str) -> bool:
        return any(
            d.principal in (principal, WILDCARD)
            and d.operation in (operation, "ALL")
            and d.covers_topic(name)
            for d in denied
        )

    return {grant for grant in allow if not is_denied(*grant)}


def _day(epoch: int, rotation_ms: int) -> str:
    moment = datetime.fromtimestamp(epoch * rotation_ms / 1000, tz=UTC)
    return moment.isoformat(timespec="seconds").replace("+00:00", "Z")
