"""The Kafka topics each contract needs, and how the live cluster differs from them.

``contract_topics`` derives the topic specifications from a contract (BRIEF §4 names);
``plan`` compares them with the cluster; ``apply`` creates and alters topics. Nothing here
deletes a topic, and a change that would drop stored data early (a shorter retention, a
cleanup policy switching to ``delete``) is only carried out when the caller allows it.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from enum import Enum

from kafka.admin import ConfigResource, ConfigResourceType, NewTopic
from kafka.errors import KafkaError

from broker.kafka.admin import AdminSession
from contracts.errors import RespublicaError
from contracts.model import Contract, View

FOREVER = "-1"
# Internal working topics only need to outlive the longest open window; a day of slack
# covers restarts and slow consumers without holding raw-derived state for long.
INTERNAL_SLACK = timedelta(days=1)
# Worker checkpoints and merger snapshots carry open-window state (pseudonym sets), which can
# outgrow Kafka's 1 MiB default; the worker's producers and consumers use the same bound.
STATE_MAX_MESSAGE_BYTES = 32 * 1024 * 1024
# The key topic rolls a segment at least hourly and compacts it within the hour after: a
# destroyed key's sealed bytes leave the disk within the bound in docs/security.md ("Keys").
KEYS_SEGMENT_MS = 3_600_000
KEYS_FILE_DELETE_DELAY_MS = 60_000


class TopicAdminError(RespublicaError):
    """The cluster refused or could not answer an admin request."""


@dataclass(frozen=True)
class TopicSpec:
    """One topic a contract needs: its name, partitions, managed configs and why it exists."""

    name: str
    partitions: int
    configs: dict[str, str]
    purpose: str
    contract_id: str

    @property
    def retention_ms(self) -> int:
        return int(self.configs.get("retention.ms", FOREVER))


def _ms(duration: timedelta) -> str:
    return str(int(duration.total_seconds() * 1000))


def _view_horizon(contract: Contract, view: View) -> timedelta:
    stream = contract.stream(view.stream)
    return view.window + stream.allowed_lateness + view.delay + INTERNAL_SLACK


def partials_topic(contract: Contract, view: View | str) -> str:
    """``respublica.<c>.partials.<v>``: partials and checkpoints of one view (internal)."""
    return f"respublica.{contract.id}.partials.{view if isinstance(view, str) else view.name}"


def keys_topic(contract: Contract) -> str:
    """``respublica.<c>.keys``: the contract's sealed pseudonym and noise keys (internal)."""
    return f"respublica.{contract.id}.keys"


def state_topic(contract: Contract) -> str:
    """``respublica.<c>.state``: merger snapshots, committed with releases (internal)."""
    return f"respublica.{contract.id}.state"


def contract_topics(contract: Contract) -> list[TopicSpec]:
    """Every topic the contract needs, in a stable order."""
    specs: list[TopicSpec] = []
    cid = contract.id
    for stream in contract.streams:
        retention = {"cleanup.policy": "delete", "retention.ms": _ms(stream.retention)}
        specs += [
            TopicSpec(
                contract.topic_ingest(stream),
                stream.partitions,
                dict(retention),
                f"provider input for stream {stream.name} (untrusted)",
                cid,
            ),
            TopicSpec(
                contract.topic_raw(stream),
                stream.partitions,
                dict(retention),
                f"validated events of stream {stream.name} (internal)",
                cid,
            ),
            TopicSpec(
                contract.topic_dlq(stream),
                1,
                dict(retention),
                f"rejected events of stream {stream.name}, with reasons (internal)",
                cid,
            ),
        ]
    for view in contract.views:
        specs.append(
            TopicSpec(
                contract.topic_public(view),
                1,
                {"cleanup.policy": "compact", "retention.ms": FOREVER},
                f"published releases of view {view.name} (beneficiary reads)",
                cid,
            )
        )
        # Compaction may only drop a superseded partial once its window is surely released:
        # the merger relies on reading a source's partials before the checkpoint after them.
        open_for = view.window + contract.stream(view.stream).allowed_lateness + view.delay
        specs.append(
            TopicSpec(
                partials_topic(contract, view),
                1,
                {
                    "cleanup.policy": "compact,delete",
                    "retention.ms": _ms(_view_horizon(contract, view)),
                    "min.compaction.lag.ms": _ms(open_for),
                    "max.message.bytes": str(STATE_MAX_MESSAGE_BYTES),
                },
                f"per-partition partial aggregates of view {view.name} (internal)",
                cid,
            )
        )
    # Keys are tombstoned when destroyed; short segments and a maximum compaction lag let
    # compaction really drop them within a bound (docs/security.md, "Keys").
    specs.append(
        TopicSpec(
            keys_topic(contract),
            1,
            {
                "cleanup.policy": "compact",
                "retention.ms": FOREVER,
                "segment.ms": str(KEYS_SEGMENT_MS),
                "max.compaction.lag.ms": str(KEYS_SEGMENT_MS),
                "delete.retention.ms": "60000",
                "file.delete.delay.ms": str(KEYS_FILE_DELETE_DELAY_MS),
                "min.cleanable.dirty.ratio": "0.01",
            },
            "encrypted pseudonym and noise keys (internal)",
            cid,
        )
    )
    # The mergers' snapshots, written in the same transaction as their releases.
    specs.append(
        TopicSpec(
            state_topic(contract),
            1,
            {
                "cleanup.policy": "compact",
                "retention.ms": FOREVER,
                "max.message.bytes": str(STATE_MAX_MESSAGE_BYTES),
            },
            "merger state of every view, committed with its releases (internal)",
            cid,
        )
    )
    return specs


class ActionKind(Enum):
    CREATE = "create"
    ALTER = "alter"
    UNCHANGED = "unchanged"
    BLOCKED = "blocked"
    """Nothing to carry out, but something the contract needs was withheld (``withheld``)."""


@dataclass(frozen=True)
class TopicAction:
    """What ``apply`` does to one topic, and what it withholds and why.

    ``changes`` are carried out (ALTER); ``withheld`` says, one line each, what the contract
    needs but ``apply`` will not do: a partition count to change by hand, a change that would
    drop stored data early without ``--allow-data-loss``. An ALTER may withhold something too.
    """

    spec: TopicSpec
    kind: ActionKind
    changes: dict[str, tuple[str | None, str]] = field(default_factory=dict)
    withheld: tuple[str, ...] = ()

    @property
    def reason(self) -> str:
        """Every withheld item, in one line."""
        return "; ".join(self.withheld)

    def describe(self) -> str:
        spec = self.spec
        lines = []
        if self.kind is ActionKind.CREATE:
            configs = ", ".join(f"{k}={v}" for k, v in sorted(spec.configs.items()))
            lines.append(f"+ create {spec.name} (partitions={spec.partitions}, {configs})")
        elif self.kind is ActionKind.ALTER:
            lines.append(f"~ alter  {spec.name} ({_diffs(self.changes)})")
        elif self.kind is ActionKind.UNCHANGED:
            lines.append(f"= keep   {spec.name}")
        lines += [f"! skip   {spec.name}: {item}" for item in self.withheld]
        return "\n".join(lines)


def _diffs(changes: dict[str, tuple[str | None, str]]) -> str:
    return ", ".join(f"{key}: {old} -> {new}" for key, (old, new) in sorted(changes.items()))


@dataclass(frozen=True)
class Plan:
    actions: tuple[TopicAction, ...]

    @property
    def pending(self) -> tuple[TopicAction, ...]:
        return tuple(a for a in self.actions if a.kind in (ActionKind.CREATE, ActionKind.ALTER))

    @property
    def skipped(self) -> tuple[TopicAction, ...]:
        """Topics with something the contracts need that ``apply`` withholds."""
        return tuple(a for a in self.actions if a.withheld)

    def render(self) -> str:
        lines = [action.describe() for action in self.actions]
        counts = {kind: sum(a.kind is kind for a in self.actions) for kind in ActionKind}
        lines.append(
            f"{counts[ActionKind.CREATE]} to create, {counts[ActionKind.ALTER]} to alter, "
            f"{counts[ActionKind.UNCHANGED]} unchanged, {len(self.skipped)} with changes skipped"
        )
        return "\n".join(lines)


def _loses_data(key: str, old: str | None, new: str) -> bool:
    if key == "retention.ms" and old is not None:
        old_ms, new_ms = int(old), int(new)
        return old_ms < 0 <= new_ms or 0 <= new_ms < old_ms
    return key == "cleanup.policy" and "delete" in new and "delete" not in (old or "")


def _diff(
    spec: TopicSpec, live: dict[str, str], live_partitions: int, allow_data_loss: bool
) -> TopicAction:
    """Configs are altered whatever the partitions; each part withheld is said, with why."""
    changes = {k: (live.get(k), v) for k, v in spec.configs.items() if live.get(k) != v}
    withheld = []
    if live_partitions != spec.partitions:
        withheld.append(
            f"has {live_partitions} partitions, contract says {spec.partitions}; "
            "repartitioning a keyed topic is a manual operation"
        )
    risky = {k: c for k, c in changes.items() if _loses_data(k, *c)}
    if risky and not allow_data_loss:
        for key in risky:
            del changes[key]
        withheld.append(
            f"withheld {_diffs(risky)}: it would drop stored data early; "
            "rerun with --allow-data-loss to do it"
        )
    kind = ActionKind.ALTER if changes else ActionKind.UNCHANGED
    if not changes and withheld:
        kind = ActionKind.BLOCKED
    return TopicAction(spec, kind, changes, tuple(withheld))


class TopicAdmin(AdminSession):
    """The few admin calls plan/apply need, with Kafka errors translated."""

    role = "admin"
    error = TopicAdminError

    def partitions(self, names: Sequence[str]) -> dict[str, int]:
        existing = set(self._admin.list_topics())
        wanted = [n for n in names if n in existing]
        if not wanted:
            return {}
        return {t["name"]: len(t["partitions"]) for t in self._admin.describe_topics(wanted)}

    def configs(self, names: Iterable[str]) -> dict[str, dict[str, str]]:
        resources = [ConfigResource(ConfigResourceType.TOPIC, n) for n in names]
        if not resources:
            return {}
        described = self._admin.describe_configs(resources)["topic"]
        return {
            name: {k: str(v["value"]) for k, v in cfg.items()} for name, cfg in described.items()
        }

    def create(self, specs: Sequence[TopicSpec]) -> None:
        topics = [NewTopic(s.name, s.partitions, 1, topic_configs=s.configs) for s in specs]
        try:
            self._admin.create_topics(topics)
        except KafkaError as exc:
            msg = f"creating topics failed: {type(exc).__name__}"
            raise TopicAdminError(msg) from exc

    def alter(self, action: TopicAction) -> None:
        new = {key: value for key, (_, value) in action.changes.items()}
        resource = ConfigResource(ConfigResourceType.TOPIC, action.spec.name, new)
        try:
            results = self._admin.alter_configs([resource])
        except KafkaError as exc:
            msg = f"altering {action.spec.name} failed: {type(exc).__name__}"
            raise TopicAdminError(msg) from exc
        # The broker answers per resource; a refusal is a result, not an exception.
        result = results.get("topic", {}).get(action.spec.name)
        if result != "OK":
            msg = f"altering {action.spec.name} was refused by the broker: {result}"
            raise TopicAdminError(msg)


def plan(
    admin: TopicAdmin, contracts: Sequence[Contract], *, allow_data_loss: bool = False
) -> Plan:
    """Compare every contract's topics with the cluster."""
    specs = [spec for contract in contracts for spec in contract_topics(contract)]
    partitions = admin.partitions([s.name for s in specs])
    live_configs = admin.configs(partitions)
    actions = []
    for spec in specs:
        if spec.name not in partitions:
            actions.append(TopicAction(spec, ActionKind.CREATE))
        else:
            actions.append(
                _diff(spec, live_configs.get(spec.name, {}), partitions[spec.name], allow_data_loss)
            )
    return Plan(tuple(actions))


def apply(admin: TopicAdmin, current: Plan) -> Plan:
    """Carry out a plan's creations and alterations; returns the plan that was applied."""
    creates = [a.spec for a in current.actions if a.kind is ActionKind.CREATE]
    if creates:
        admin.create(creates)
    for action in current.actions:
        if action.kind is ActionKind.ALTER:
            admin.alter(action)
    return current
