"""The contracts on the broker: ``respublica._contracts``, so analysts need no contract files.

``respublica apply`` writes each contract it applies as one self-contained document
(``contracts/bundle.py``: the contract, its Avro schemas, territory and zone files, and its
policy hash); ``respublica export`` / ``subscribe`` and ``read_view(kafka, "<id>", ...)`` read
it back with nothing but Kafka credentials.

One compacted topic, one partition, kept forever (a view's releases are kept forever, so is
the contract that explains them); key: the contract id; value: the document as canonical JSON,
gzip-compressed on the wire. ``apply`` writes a contract only when its document changed, so a
second run does nothing. Only the admin writes it (no worker, provider or consumer prefix
covers ``respublica._``); every consumer principal a contract lists may read it
(``acls.contract_bindings``). The topic holds contracts only, which are public documents: a
consumer of one contract can read every contract's terms, never any data.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import Enum

from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from kafka.admin import KafkaAdminClient, NewTopic
from kafka.errors import KafkaError, TopicAlreadyExistsError

from broker.kafka.clients import ReadTimeout, read_partitions
from broker.kafka.settings import KafkaSettings, as_settings
from broker.kafka.topics import STATE_MAX_MESSAGE_BYTES
from contracts.bundle import (
    ContractDocumentError,
    contract_document,
    contract_from_document,
    document_bytes,
)
from contracts.errors import RespublicaError
from contracts.model import Contract
from contracts.policy_hash import policy_hash

CATALOGUE_TOPIC = "respublica._contracts"
MAX_DOCUMENT_BYTES = STATE_MAX_MESSAGE_BYTES
"""A contract with its zone files may exceed Kafka's 1 MB default (a city's census polygons)."""
_CONFIGS = {
    "cleanup.policy": "compact",
    "retention.ms": "-1",
    "max.message.bytes": str(MAX_DOCUMENT_BYTES),
}
READ_TIMEOUT_S = 30.0


class CatalogueError(RespublicaError):
    """The contracts topic cannot be read or written, or lacks the contract asked for."""


class EntryKind(Enum):
    PUBLISH = "publish"
    REPLACE = "replace"
    KEEP = "keep"


_SIGNS = {
    EntryKind.PUBLISH: "+ publish",
    EntryKind.REPLACE: "~ replace",
    EntryKind.KEEP: "= keep   ",
}


@dataclass(frozen=True)
class CatalogueEntry:
    """What ``apply`` does with one contract's document."""

    contract_id: str
    version: int
    policy_hash: str
    kind: EntryKind
    was: str = ""  # the version and short hash it replaces

    def describe(self) -> str:
        what = f"contract {self.contract_id} v{self.version} (policy {self.policy_hash[:16]})"
        sign = {"publish": "+ publish", "replace": "~ replace", "keep": "= keep   "}[
            self.kind.value
        ]
        was = f", was {self.was}" if self.was else ""
        return f"{sign} {what} on {CATALOGUE_TOPIC}{was}"


@dataclass(frozen=True)
class CataloguePlan:
    """One entry per contract of the run, and the documents to write."""

    entries: tuple[CatalogueEntry, ...]
    documents: dict[str, bytes]

    @property
    def pending(self) -> tuple[CatalogueEntry, ...]:
        return tuple(e for e in self.entries if e.kind is not EntryKind.KEEP)

    def render(self) -> str:
        lines = [entry.describe() for entry in self.entries]
        lines.append(
            f"{len(self.pending)} contract(s) to publish on {CATALOGUE_TOPIC}, "
            f"{len(self.entries) - len(self.pending)} unchanged"
        )
        return "\n".join(lines)


def plan_catalogue(
    kafka: KafkaSettings | str, contracts: Sequence[Contract], *, now: datetime
) -> CataloguePlan:
    """Each contract's document against the one on the topic (pure but for the read)."""
    live = read_catalogue(kafka, missing_ok=True)
    entries, documents = [], {}
    for contract in contracts:
        try:
            value = document_bytes(contract_document(contract, now=now))
        except ContractDocumentError as exc:
            raise CatalogueError(str(exc)) from exc
        if len(value) > MAX_DOCUMENT_BYTES:
            msg = f"contract {contract.id} with its files is over {MAX_DOCUMENT_BYTES} bytes"
            raise CatalogueError(msg)
        digest = policy_hash(contract)
        current = live.get(contract.id)
        if current == value:
            kind, was = EntryKind.KEEP, ""
        else:
            kind = EntryKind.PUBLISH if current is None else EntryKind.REPLACE
            was = "" if current is None else _summary(current)
            documents[contract.id] = value
        entries.append(CatalogueEntry(contract.id, contract.version, digest, kind, was))
    return CataloguePlan(tuple(entries), documents)


def _summary(value: bytes) -> str:
    try:
        doc = json.loads(value)
        return f"v{doc['version']} (policy {str(doc['policy_hash'])[:16]})"
    except (ValueError, KeyError, TypeError, RecursionError):
        return "a record that is not a contract document"


def publish(kafka: KafkaSettings | str, plan: CataloguePlan) -> None:
    """Write the plan's documents, creating the topic first if it is missing."""
    if not plan.documents:
        return
    settings = as_settings(kafka)
    _ensure_topic(settings)
    try:
        producer = KafkaProducer(
            **settings.kafka_python("catalogue"),
            acks="all",
            compression_type="gzip",
            max_request_size=MAX_DOCUMENT_BYTES + 64 * 1024,
        )
    except KafkaError as exc:
        msg = f"cannot reach Kafka at {settings.bootstrap} ({type(exc).__name__})"
        raise CatalogueError(msg) from exc
    try:
        sent = [
            producer.send(CATALOGUE_TOPIC, key=cid.encode(), value=value)
            for cid, value in sorted(plan.documents.items())
        ]
        for future in sent:
            future.get(timeout=30)
    except KafkaError as exc:
        msg = f"writing {CATALOGUE_TOPIC} failed: {type(exc).__name__}"
        raise CatalogueError(msg) from exc
    finally:
        producer.close(timeout=10)


def _ensure_topic(settings: KafkaSettings) -> None:
    try:
        admin = KafkaAdminClient(**settings.kafka_python("catalogue"))
    except KafkaError as exc:
        msg = f"cannot reach Kafka at {settings.bootstrap} ({type(exc).__name__})"
        raise CatalogueError(msg) from exc
    try:
        if CATALOGUE_TOPIC not in set(admin.list_topics()):
            admin.create_topics([NewTopic(CATALOGUE_TOPIC, 1, 1, topic_configs=dict(_CONFIGS))])
    except TopicAlreadyExistsError:
        pass  # another apply made it meanwhile
    except KafkaError as exc:
        msg = f"creating {CATALOGUE_TOPIC} failed: {type(exc).__name__}"
        raise CatalogueError(msg) from exc
    finally:
        admin.close()


def read_catalogue(
    kafka: KafkaSettings | str, *, missing_ok: bool = False, timeout_s: float = READ_TIMEOUT_S
) -> dict[str, bytes]:
    """Contract id → its latest document on the topic (a tombstone removes it).

    A topic that is missing, or that these credentials may not see, is ``{}`` with
    ``missing_ok``, else a ``CatalogueError`` that says what to do.
    """
    settings = as_settings(kafka)
    try:
        consumer = KafkaConsumer(
            **settings.kafka_python("catalogue"),
            group_id=None,
            enable_auto_commit=False,
            max_partition_fetch_bytes=MAX_DOCUMENT_BYTES + 64 * 1024,
        )
    except KafkaError as exc:
        msg = f"cannot reach Kafka at {settings.bootstrap} ({type(exc).__name__})"
        raise CatalogueError(msg) from exc
    try:
        if CATALOGUE_TOPIC not in consumer.topics():  # lists only what we may describe
            if missing_ok:
                return {}
            msg = (
                f"no {CATALOGUE_TOPIC} topic that {settings.username or 'you'} may read: the "
                "broker operator publishes contracts with `respublica apply`, which lets every "
                "consumer a contract lists read them; or name a contract file (--contracts)"
            )
            raise CatalogueError(msg)
        partitions = consumer.partitions_for_topic(CATALOGUE_TOPIC) or set()
        tps = [TopicPartition(CATALOGUE_TOPIC, p) for p in sorted(partitions)]
        records = read_partitions(consumer, tps, timeout_s=timeout_s)
    except (KafkaError, ReadTimeout) as exc:
        msg = f"reading {CATALOGUE_TOPIC} failed: {type(exc).__name__}"
        raise CatalogueError(msg) from exc
    finally:
        consumer.close()
    return latest_documents((r.key, r.value) for tp in tps for r in records[tp])


def latest_documents(records: Iterable[tuple[bytes | None, bytes | None]]) -> dict[str, bytes]:
    """The last value per key, in topic order; a tombstone removes the key."""
    out: dict[str, bytes] = {}
    for key, value in records:
        if key is None:
            continue
        name = key.decode("utf-8", "replace")
        if value is None:
            out.pop(name, None)
        else:
            out[name] = value
    return out


def fetch_contract(
    kafka: KafkaSettings | str,
    contract_id: str,
    *,
    now: datetime,
    timeout_s: float = READ_TIMEOUT_S,
) -> Contract:
    """The contract ``contract_id`` as the broker's operator applied it, validated again."""
    documents = read_catalogue(kafka, timeout_s=timeout_s)
    value = documents.get(contract_id)
    if value is None:
        known = ", ".join(sorted(documents)) or "none"
        msg = f"no contract {contract_id} on {CATALOGUE_TOPIC} (contracts there: {known})"
        raise CatalogueError(msg)
    origin = f"{CATALOGUE_TOPIC}:{contract_id}"
    try:
        return contract_from_document(value, now=now, origin=origin)
    except ContractDocumentError as exc:
        raise CatalogueError(str(exc)) from exc
