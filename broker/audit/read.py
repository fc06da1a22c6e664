"""What the auditor reads from the cluster: whole topics up to a fixed end, configs and ACLs.

Every topic is read with ``read_committed`` from its first retained offset to its end *as of
the start of the audit* (the last stable offset), so aborted releases are never seen and the
same topics give the same records. The end offsets read are part of the report: two reports
over the same offsets are the same report.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from kafka import KafkaAdminClient, KafkaConsumer, TopicPartition
from kafka.admin import (
    ACLFilter,
    ACLOperation,
    ACLPermissionType,
    ACLResourcePatternType,
    ResourcePatternFilter,
    ResourceType,
)
from kafka.consumer.fetcher import ConsumerRecord
from kafka.errors import KafkaError, SecurityDisabledError

from broker.kafka.acls import AclBinding
from broker.kafka.clients import read_partitions
from broker.kafka.settings import KafkaSettings, as_settings
from broker.kafka.topics import STATE_MAX_MESSAGE_BYTES
from contracts.errors import RespublicaError

READ_TIMEOUT_S = 120.0
_POLL_MS = 200


class AuditError(RespublicaError):
    """The audit cannot be carried out (unreachable cluster, a topic that never ends...)."""


@dataclass
class TopicRead:
    """The records of one topic, per partition in offset order, and where reading stopped."""

    topic: str
    exists: bool = True
    records: dict[int, list[ConsumerRecord]] = field(default_factory=dict)
    start: dict[int, int] = field(default_factory=dict)
    end: dict[int, int] = field(default_factory=dict)

    def all(self) -> list[ConsumerRecord]:
        """Every record, partition by partition."""
        return [r for p in sorted(self.records) for r in self.records[p]]

    @property
    def trimmed(self) -> bool:
        """Retention (or compaction of the head) removed records from some partition."""
        return any(offset > 0 for offset in self.start.values())


@dataclass
class AclState:
    """The cluster's ACLs, or why they could not be listed."""

    enforced: bool
    bindings: list[AclBinding] = field(default_factory=list)
    error: str = ""


class ClusterReader:
    """One read_committed consumer and one admin client for the whole audit."""

    def __init__(self, kafka: KafkaSettings | str, *, timeout_s: float = READ_TIMEOUT_S) -> None:
        self.kafka = settings = as_settings(kafka)
        self.timeout_s = timeout_s
        try:
            self._consumer = KafkaConsumer(
                **settings.kafka_python("audit"),
                group_id=None,
                enable_auto_commit=False,
                auto_offset_reset="earliest",
                isolation_level="read_committed",
                max_partition_fetch_bytes=STATE_MAX_MESSAGE_BYTES + 64 * 1024,
            )
            self._admin = KafkaAdminClient(
                **settings.kafka_python("audit"), request_timeout_ms=15000
            )
        except (KafkaError, OSError) as exc:
            msg = f"cannot reach the Kafka cluster at {settings.bootstrap} ({type(exc).__name__})"
            raise AuditError(msg) from exc

    def close(self) -> None:
        """Release both clients."""
        self._consumer.close()
        self._admin.close()

    def __enter__(self) -> ClusterReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def topics(self) -> set[str]:
        """Names of the topics on the cluster."""
        return set(self._admin.list_topics())

    def read(self, topic: str) -> TopicRead:
        """Every committed record of ``topic`` up to its end now (missing topic: empty)."""
        partitions = self._consumer.partitions_for_topic(topic)
        if not partitions:
            return TopicRead(topic, exists=False)
        tps = [TopicPartition(topic, p) for p in sorted(partitions)]
        starts = self._consumer.beginning_offsets(tps)
        ends = self._consumer.end_offsets(tps)
        read = read_partitions(
            self._consumer, tps, starts=starts, ends=ends, timeout_s=self.timeout_s
        )
        return TopicRead(
            topic,
            records={tp.partition: read[tp] for tp in tps},
            start={tp.partition: int(starts[tp]) for tp in tps},
            end={tp.partition: int(ends[tp]) for tp in tps},
        )

    def describe(self, names: Sequence[str]) -> tuple[dict[str, int], dict[str, dict[str, str]]]:
        """Partition counts and configs of the topics that exist among ``names``."""
        from broker.kafka.topics import TopicAdmin  # its admin calls, with errors translated

        with TopicAdmin(self.kafka) as admin:
            partitions = admin.partitions(list(names))
            return partitions, admin.configs(sorted(partitions))

    def acls(self) -> AclState:
        """Every ACL (topics, groups, ...: each check filters by resource type);
        ``enforced=False`` when the cluster has no authorizer."""
        pattern = ResourcePatternFilter(ResourceType.ANY, None, ACLResourcePatternType.ANY)
        acl_filter = ACLFilter(
            principal=None,
            host=None,
            operation=ACLOperation.ANY,
            permission_type=ACLPermissionType.ANY,
            resource_pattern=pattern,
        )
        try:
            found, _ = self._admin.describe_acls(acl_filter)  # errors are raised
        except SecurityDisabledError:
            return AclState(enforced=False)
        except KafkaError as exc:
            return AclState(enforced=False, error=type(exc).__name__)
        return AclState(enforced=True, bindings=sorted(AclBinding.from_acl(a) for a in found))
