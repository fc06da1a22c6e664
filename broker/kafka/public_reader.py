"""Reading a view's public topic as typed rows: what analysts, exports and audits start from.

``public.<c>.<v>`` holds, per released window, one record per published group and one
suppression report (see ``broker/kafka/publish.py``). Releases are written inside Kafka
transactions, so every reader here uses ``isolation_level=read_committed``: an aborted attempt
(a worker killed mid-release) is never seen.

* ``read_view`` reads from the beginning to the current end (the last stable offset) and
  returns ``ViewContents``: rows deduplicated by record key, the last one kept (the topic is
  compacted; a re-emitted window overwrites identical bytes), sorted by window then group.
  Only releases of this contract's policy are returned: a record whose policy-hash header is
  not ``short_policy_hash(contract)``, and the groups of a window without a suppression report
  (the worker commits a window's groups and report in one transaction, so such groups were
  not released by it), are left out and counted in ``ViewContents.left_out``.
* ``follow_view`` yields rows as they are committed, until the caller stops iterating.

Both filter by *window start*: ``since_ms <= window_start < until_ms``.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable, Generator, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from kafka import KafkaConsumer, TopicPartition
from kafka.consumer.fetcher import ConsumerRecord
from kafka.errors import KafkaError

from broker.deadline import Deadline
from broker.kafka.clients import read_partitions
from broker.kafka.publish import H_POLICY_HASH, public_schemas
from broker.kafka.reasons import Reason
from broker.kafka.serde import Schemas, SerializationError, decode
from broker.kafka.settings import KafkaSettings, as_settings
from contracts.errors import RespublicaError
from contracts.model import Contract, View
from contracts.policy_hash import short_policy_hash

READ_TIMEOUT_S = 60.0
_POLL_MS = 200


class PublicReaderError(RespublicaError):
    """A public topic cannot be read (unreachable cluster, missing topic, timeout)."""


@dataclass(frozen=True)
class PublishedGroup:
    """One published group of one window: dimension values and measures, as published."""

    window_start: int
    window_end: int
    group: dict[str, str | None]
    measures: dict[str, Any]
    headers: dict[str, str]
    topic: str = ""
    partition: int = 0
    offset: int = -1


@dataclass(frozen=True)
class WindowReport:
    """The suppression report of one window (MDS-style: counts of groups only)."""

    window_start: int
    window_end: int
    k: int
    groups_published: int
    groups_suppressed: int | None
    """None for a noised view, which does not publish it."""
    withheld_reason: str | None
    epsilon: float
    headers: dict[str, str]
    topic: str = ""
    partition: int = 0
    offset: int = -1
    groups_secondary: int | None = None
    """Of the suppressed groups, those withheld to protect linked views (None: not stated)."""

    def summary(self) -> str:
        """``k=10: 12 groups published, 3 suppressed`` (and why a window was withheld)."""
        suppressed = "?" if self.groups_suppressed is None else self.groups_suppressed
        text = f"k={self.k}: {self.groups_published} groups published, {suppressed} suppressed"
        if self.groups_secondary:
            text += f" ({self.groups_secondary} to protect linked views)"
        if self.epsilon:
            text += f", ε={self.epsilon:g}"
        if self.withheld_reason:
            text += f" (withheld: {self.withheld_reason})"
        return text


Row = PublishedGroup | WindowReport
Window = tuple[int, int]


@dataclass(frozen=True)
class LeftOut:
    """What ``read_view`` read but does not return, counted (exports state it in metadata)."""

    windows_without_report: int = 0  # windows with groups and no suppression report
    foreign_policy_hash: int = 0  # records whose policy hash is not the contract's

    def __bool__(self) -> bool:
        return bool(self.windows_without_report or self.foreign_policy_hash)

    def to_dict(self) -> dict[str, int]:
        """JSON form: ``{"windows_without_report": n, "foreign_policy_hash": m}``."""
        return {
            "windows_without_report": self.windows_without_report,
            "foreign_policy_hash": self.foreign_policy_hash,
        }


@dataclass
class ViewContents:
    """Everything committed on a view's public topic (within the bounds asked for)."""

    contract: Contract
    view: View
    groups: list[PublishedGroup] = field(default_factory=list)
    reports: list[WindowReport] = field(default_factory=list)
    records_read: int = 0
    undecodable: list[tuple[str, int, int]] = field(default_factory=list)
    left_out: LeftOut = field(default_factory=LeftOut)

    @property
    def topic(self) -> str:
        """``public.<c>.<v>``."""
        return self.contract.topic_public(self.view)

    def windows(self) -> list[Window]:
        """Every window with a report or a group, in time order."""
        seen = {(r.window_start, r.window_end) for r in self.reports}
        seen |= {(g.window_start, g.window_end) for g in self.groups}
        return sorted(seen)

    def groups_of(self, window: Window) -> list[PublishedGroup]:
        """The published groups of one window."""
        return [g for g in self.groups if (g.window_start, g.window_end) == window]

    def report_of(self, window: Window) -> WindowReport | None:
        """The suppression report of one window, if committed."""
        return next((r for r in self.reports if (r.window_start, r.window_end) == window), None)


def parse_instant(text: str) -> int:
    """Milliseconds since the epoch from ``1767225600000`` or ISO 8601 (naive means UTC)."""
    value = text.strip()
    if value.lstrip("-").isdigit():
        return int(value)
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        msg = "a time must be milliseconds since the epoch or ISO 8601 (2026-03-01T08:00Z)"
        raise PublicReaderError(msg) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return int(moment.timestamp() * 1000)


def iso_utc(ms: int) -> str:
    """``2026-03-01T08:15:00Z`` for a time in ms (milliseconds kept only when not zero)."""
    moment = datetime.fromtimestamp(ms / 1000, tz=UTC)
    text = moment.isoformat(timespec="milliseconds" if ms % 1000 else "seconds")
    return text.replace("+00:00", "Z")


class RowDecoder:
    """Turns the records of one view's public topic into ``PublishedGroup``/``WindowReport``."""

    def __init__(self, contract: Contract, view: View, schemas: Schemas | None = None) -> None:
        self.schemas = schemas or public_schemas([contract])
        self.dimensions = tuple(d.name for d in view.group_by)
        self.measure_names = tuple(m.name for m in view.measures)

    def decode(self, record: ConsumerRecord) -> Row:
        """The row of a record; ``SerializationError`` if its key or value cannot be read."""
        if record.key is None or record.value is None:
            raise SerializationError(Reason.AVRO_INVALID)
        try:
            key = json.loads(record.key)
        except ValueError as exc:
            raise SerializationError(Reason.AVRO_INVALID, "key") from exc
        _, row = decode(record.value, self.schemas)
        try:
            return self._row(key, row, record)
        except (KeyError, TypeError, ValueError) as exc:  # a value of the other schema
            raise SerializationError(Reason.AVRO_INVALID) from exc

    def _row(self, key: Any, row: dict[str, Any], record: ConsumerRecord) -> Row:
        headers = {
            name: bytes(value or b"").decode("utf-8", "replace")
            for name, value in record.headers or ()
        }
        start, end = int(row["window_start"]), int(row["window_end"])
        where = (record.topic, record.partition, record.offset)
        if isinstance(key, dict) and key.get("report"):
            return WindowReport(
                start,
                end,
                int(row["k"]),
                int(row["groups_published"]),
                None if row["groups_suppressed"] is None else int(row["groups_suppressed"]),
                row.get("withheld_reason"),
                float(row["epsilon"]),
                headers,
                *where,
                groups_secondary=_optional_int(row.get("groups_secondary")),
            )
        group = {name: row.get(name) for name in self.dimensions}
        measures = {name: row.get(name) for name in self.measure_names}
        return PublishedGroup(start, end, group, measures, headers, *where)


def _optional_int(value: Any) -> int | None:
    return None if value is None else int(value)


def _in_bounds(row: Row, since_ms: int | None, until_ms: int | None) -> bool:
    if since_ms is not None and row.window_start < since_ms:
        return False
    return until_ms is None or row.window_start < until_ms


def public_consumer(
    kafka: KafkaSettings | str, config: Mapping[str, Any] | None = None
) -> KafkaConsumer:
    """A group-less, never-committing ``read_committed`` consumer."""
    cluster = as_settings(kafka)
    settings: dict[str, Any] = {
        **cluster.kafka_python("reader"),
        "group_id": None,
        "enable_auto_commit": False,
        "auto_offset_reset": "earliest",
        "isolation_level": "read_committed",
    }
    settings.update(config or {})
    if settings["isolation_level"] != "read_committed":
        msg = "public topics must be read with isolation_level=read_committed"
        raise PublicReaderError(msg)
    try:
        return KafkaConsumer(**settings)
    except KafkaError as exc:
        msg = f"cannot reach Kafka at {cluster.bootstrap} ({type(exc).__name__})"
        raise PublicReaderError(msg) from exc


def _partitions(consumer: KafkaConsumer, topic: str, timeout_s: float) -> list[TopicPartition]:
    deadline = Deadline(timeout_s)
    while True:
        partitions = consumer.partitions_for_topic(topic)
        if partitions:
            return [TopicPartition(topic, p) for p in sorted(partitions)]
        if deadline.expired():
            # The broker lists only the topics a principal may describe: a view another
            # contract's analyst may not read looks exactly like one never created.
            who = consumer.config.get("sasl_plain_username") or "you"
            msg = (
                f"no topic {topic} that {who} may read: is the view granted to this principal "
                "(its contract's consumers)? else the broker operator runs `respublica apply`"
            )
            raise PublicReaderError(msg)
        time.sleep(0.1)


def resolve_contract(kafka: KafkaSettings | str, contract: Contract | str) -> Contract:
    """``contract``, or the contract of that id as published on the broker (the
    ``respublica._contracts`` topic ``respublica apply`` writes): no file needed."""
    if isinstance(contract, Contract):
        return contract
    from broker.kafka.catalogue import fetch_contract  # the document loader only when needed

    return fetch_contract(kafka, contract, now=datetime.now(UTC))


def resolve_view(contract: Contract, view: View | str) -> View:
    """The view object of ``view`` (a name or a view); ``PublicReaderError`` if unknown."""
    if isinstance(view, View):
        return view
    try:
        return contract.view(view)
    except KeyError:
        msg = f"contract {contract.id} has no view {view!r}"
        raise PublicReaderError(msg) from None


def read_view(
    kafka: KafkaSettings | str,
    contract: Contract | str,
    view: View | str,
    *,
    since_ms: int | None = None,
    until_ms: int | None = None,
    timeout_s: float = READ_TIMEOUT_S,
    consumer_config: Mapping[str, Any] | None = None,
) -> ViewContents:
    """Every committed row of ``public.<c>.<v>`` now, deduplicated by key (last one kept).

    Rows whose window starts outside ``[since_ms, until_ms)`` are left out. Records that do
    not decode (another contract version's schema, say) are listed in ``undecodable``; records
    of another policy and groups of windows without a report are counted in ``left_out``.
    A contract given by id is read from the broker (``resolve_contract``).
    """
    contract = resolve_contract(kafka, contract)
    resolved = resolve_view(contract, view)
    contents = ViewContents(contract, resolved)
    decoder = RowDecoder(contract, resolved)
    latest: dict[bytes, Row | None] = {}
    consumer = public_consumer(kafka, consumer_config)
    try:
        for record in _records_to_end(consumer, contract.topic_public(resolved), timeout_s):
            contents.records_read += 1
            if record.key is not None and record.value is None:  # tombstone
                latest[record.key] = None
                continue
            try:
                row = decoder.decode(record)
            except SerializationError:
                contents.undecodable.append((record.topic, record.partition, record.offset))
                continue
            latest[record.key] = row
    finally:
        consumer.close()
    rows = [r for r in latest.values() if r is not None and _in_bounds(r, since_ms, until_ms)]
    fill_released(contents, rows)
    return contents


def fill_released(contents: ViewContents, rows: Sequence[Row]) -> None:
    """Fill ``contents`` with the rows of windows this contract's policy released."""
    digest = short_policy_hash(contents.contract)
    ours = [r for r in rows if r.headers.get(H_POLICY_HASH) == digest]
    foreign = len(rows) - len(ours)
    reports = sorted(
        (r for r in ours if isinstance(r, WindowReport)),
        key=lambda r: (r.window_start, r.window_end),
    )
    reported = {(r.window_start, r.window_end) for r in reports}
    groups = [r for r in ours if isinstance(r, PublishedGroup)]
    orphans = {(g.window_start, g.window_end) for g in groups} - reported
    contents.reports = reports
    contents.groups = sorted(
        (g for g in groups if (g.window_start, g.window_end) in reported), key=_group_order
    )
    contents.left_out = LeftOut(len(orphans), foreign)


def _group_order(row: PublishedGroup) -> tuple[int, int, str]:
    return row.window_start, row.window_end, json.dumps(row.group, sort_keys=True)


def _records_to_end(
    consumer: KafkaConsumer, topic: str, timeout_s: float
) -> Iterator[ConsumerRecord]:
    """Records of every partition of ``topic`` up to the end (last stable offset) now."""
    partitions = _partitions(consumer, topic, timeout_s)
    for records in read_partitions(consumer, partitions, timeout_s=timeout_s).values():
        yield from records


class RepeatFilter:
    """Which records repeat one already read: same key, same value bytes (a re-emitted window).

    Keeps a 16-byte digest of the last value per key, never the value: a follower runs for
    the life of a server, and holding every record's bytes would double what its caller keeps.
    """

    def __init__(self) -> None:
        self._digests: dict[bytes, bytes] = {}

    def repeat(self, key: bytes, value: bytes) -> bool:
        """True when ``key`` last came with these ``value`` bytes; remembers them otherwise."""
        digest = hashlib.blake2b(value, digest_size=16).digest()
        if self._digests.get(key) == digest:
            return True
        self._digests[key] = digest
        return False


def follow_view(
    kafka: KafkaSettings | str,
    contract: Contract | str,
    view: View | str,
    *,
    from_beginning: bool = True,
    since_ms: int | None = None,
    until_ms: int | None = None,
    poll_timeout_s: float = 0.5,
    stop: Callable[[], bool] | None = None,
    consumer_config: Mapping[str, Any] | None = None,
) -> Generator[Row, None, None]:
    """Rows as they are committed, in topic order: a window's groups, then its report.

    Starts at the beginning (or at the current end with ``from_beginning=False``) and runs
    until the caller stops iterating, or ``stop()`` returns True (checked between polls). A
    record whose key was already seen with the same bytes (a re-emitted window) is skipped;
    one that decodes badly is skipped too, and so is one whose policy hash is not the
    contract's (a forged or stale release: only what this contract's policy released is
    shown). Groups are shown as they come, before their window's report. A contract given by
    id is read from the broker (``resolve_contract``).
    """
    contract = resolve_contract(kafka, contract)
    resolved = resolve_view(contract, view)
    decoder = RowDecoder(contract, resolved)
    digest = short_policy_hash(contract)
    seen = RepeatFilter()
    consumer = public_consumer(kafka, consumer_config)
    try:
        partitions = _partitions(consumer, contract.topic_public(resolved), READ_TIMEOUT_S)
        consumer.assign(partitions)
        for tp in partitions:
            if from_beginning:
                consumer.seek_to_beginning(tp)
            else:
                consumer.seek_to_end(tp)
        while stop is None or not stop():
            batches = consumer.poll(timeout_ms=int(poll_timeout_s * 1000))
            for records in batches.values():
                for record in records:
                    if record.key is None or record.value is None:
                        continue
                    if seen.repeat(record.key, record.value):
                        continue
                    try:
                        row = decoder.decode(record)
                    except SerializationError:
                        continue
                    if row.headers.get(H_POLICY_HASH) != digest:
                        continue
                    if _in_bounds(row, since_ms, until_ms):
                        yield row
    finally:
        consumer.close()
