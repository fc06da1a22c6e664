"""Terms vs reality on the cluster: topic configs, pseudonym keys, ACLs.

* Topics: every topic ``broker.kafka.topics.contract_topics`` derives from the contract must exist
  with its configs; a retention or cleanup policy other than the contract's is a violation
  (data kept longer, or dropped earlier, than signed), another managed config a warning.
* Keys (``respublica.<c>.keys``, see ``broker.worker.keystore``): the epochs whose key is
  stored, the
  epochs shredded (tombstoned), the destruction floor. A key stored below the floor is a
  violation; a key past ``key_retention`` at the latest event time is a warning (the worker
  shreds by event-time progress of every view, so an idle view legitimately delays it).
* ACLs: without an authorizer nothing is enforced (a warning: the local broker has none).
  With one, a read grant on a contract topic to a principal the contract does not name for
  it is a violation; an analyst (a contract consumer) reading ``raw.``/``dlq.``/``respublica.``
  too; a consumer without its grant is a warning.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from broker.audit.model import Findings
from broker.audit.read import AclBinding, AclState, TopicRead
from broker.kafka import topics
from contracts.durations import format_duration
from contracts.model import Contract

SECTION = "terms"
CONTRACTUAL_CONFIGS = ("retention.ms", "cleanup.policy")
READ_OPERATIONS = frozenset({"READ", "ALL"})


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
    for epoch in sorted(e for e in stored if floor is not None and e < floor):
        findings.violation(
            SECTION,
            "key-not-destroyed",
            (
                f"the pseudonym key of epoch {epoch} ({_day(epoch, rotation_ms)}) is still stored "
                f"below the destruction floor {floor}"
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
    """The cluster's topic ACLs against the contract's consumers."""
    if not state.enforced:
        reason = f" ({state.error})" if state.error else ""
        findings.warning(SECTION, "acls-not-enforced", f"no authorizer: ACLs not enforced{reason}")
        return {"enforced": False, "error": state.error, "grants": []}
    names = [spec.name for spec in topics.contract_topics(contract)]
    allowed = {(c.principal, contract.topic_public(v)) for c in contract.consumers for v in c.views}
    consumers = {c.principal for c in contract.consumers}
    grants = acl_grants(state.bindings, names)
    for principal, topic in sorted(grants):
        public = topic.startswith("public.")
        if public and (principal, topic) not in allowed:
            findings.violation(
                SECTION,
                "acl-extra-reader",
                (f"{principal} may read {topic}, the contract does not name it for that view"),
                topic,
            )
        elif not public and principal in consumers:
            findings.violation(
                SECTION,
                "acl-internal-reader",
                (f"{principal}, a beneficiary's principal, may read internal topic {topic}"),
                topic,
            )
    for principal, topic in sorted(allowed - grants):
        findings.warning(SECTION, "acl-missing", f"{principal} has no read grant on {topic}", topic)
    return {
        "enforced": True,
        "error": "",
        "grants": [{"principal": p, "topic": t} for p, t in sorted(grants)],
    }


def acl_grants(bindings: list[AclBinding], names: list[str]) -> set[tuple[str, str]]:
    """(principal, topic) pairs with an ALLOW read among ``names`` (DENY entries win)."""

    def matches(binding: AclBinding, name: str) -> bool:
        if binding.pattern == "PREFIXED":
            return name.startswith(binding.resource)
        return binding.resource in (name, "*")

    reads = [b for b in bindings if b.operation in READ_OPERATIONS]
    allow = {
        (b.principal, n) for b in reads if b.permission == "ALLOW" for n in names if matches(b, n)
    }
    deny = {
        (b.principal, n) for b in reads if b.permission == "DENY" for n in names if matches(b, n)
    }
    return allow - deny


def _day(epoch: int, rotation_ms: int) -> str:
    moment = datetime.fromtimestamp(epoch * rotation_ms / 1000, tz=UTC)
    return moment.isoformat(timespec="seconds").replace("+00:00", "Z")
