"""Look rejected events up for the broker operator: ``respublica rejections``.

A provider quotes the ``request_id`` of a gateway answer (or a time, or a reason code); this
reads the dead-letter topics of one contract, ``dlq.<c>.<s>``, and lists what its headers say:
when, which stream, reason code, field path, stage, source (the HTTP ``request_id#item`` or the
ingest ``topic/partition/offset``), connector, and the size and SHA-256 of the payload as sent.
The payload itself, the DLQ record's value, is never decoded or printed: it may hold raw
identifiers. Only topics named ``dlq.<c>.<stream>`` of the given contract are read (ids and
stream names hold no dot, so the prefix cannot reach another contract's topics).

Topics are read from their start to their end as of now: the time filter is on the
``respublica.rejected_at`` header, which a replay with its own clock may set apart from the
record's Kafka timestamp, so seeking by timestamp could skip a match. They are read
in one pass, ``CHUNK_RECORDS`` records per poll, each record filtered as it arrives and its
value (up to 64 KiB) dropped unless it matches: memory follows the matches and the fetch
buffer (``FETCH_MAX_BYTES``), not the DLQ's size. The deadline is on progress, so a DLQ
a hostile provider filled on purpose is still searched to its end.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass

from kafka import KafkaConsumer, TopicPartition
from kafka.consumer.fetcher import ConsumerRecord
from kafka.errors import KafkaError

from broker.deadline import Deadline
from broker.kafka.public_reader import iso_utc
from broker.kafka.settings import KafkaSettings
from connectors.validate import (
    H_CONNECTOR,
    H_DETAIL,
    H_FIELD,
    H_ORIGINAL_BYTES,
    H_ORIGINAL_SHA256,
    H_REASON,
    H_REJECTED_AT,
    H_SOURCE,
    H_STAGE,
    H_STREAM,
)
from contracts.errors import RespublicaError
from contracts.model import CONTRACT_ID_PATTERN, NAME_PATTERN

READ_TIMEOUT_S = 60.0  # the longest wait for the next record, not for the whole read
CHUNK_RECORDS = 500  # per poll
FETCH_MAX_BYTES = 8 * 2**20  # the consumer's fetch buffer, whatever the number of partitions
REQUEST_SEPARATOR = "#"  # the gateway's DLQ source is "<request_id>#<item index>"
_SAFE_TEXT = re.compile(r"[!-~]{0,200}")  # printable ASCII, no space or control character


class RejectionLookupError(RespublicaError):
    """The DLQ of a contract cannot be read (no such topic, not allowed, unreachable)."""


@dataclass(frozen=True)
class Rejection:
    """One dead-letter record, as its headers describe it (never its value)."""

    topic: str
    partition: int
    offset: int
    rejected_at: int | None
    stream: str
    reason: str
    field: str
    stage: str
    source: str
    connector: str
    original_bytes: int | None
    original_sha256: str
    detail: str = ""

    @property
    def request_id(self) -> str | None:
        """The gateway request this item came in (None for other sources)."""
        request, separator, _ = self.source.partition(REQUEST_SEPARATOR)
        return request if separator else None

    def as_dict(self) -> dict[str, object]:
        """The JSON form: every field, ``rejected_at`` also as ISO 8601."""
        out: dict[str, object] = asdict(self)
        out["rejected_at_iso"] = iso_utc(self.rejected_at) if self.rejected_at else None
        out["request_id"] = self.request_id
        return out


@dataclass(frozen=True)
class RejectionQuery:
    """Which rejections of one contract to list; every given filter must match."""

    contract: str
    stream: str | None = None
    request_id: str | None = None
    since_ms: int | None = None
    until_ms: int | None = None
    reasons: frozenset[str] = frozenset()

    def __post_init__(self) -> None:
        if not re.fullmatch(CONTRACT_ID_PATTERN, self.contract):
            msg = "--contract must be a contract id (lower-case letters, digits and '-')"
            raise RejectionLookupError(msg)
        if self.stream is not None and not re.fullmatch(NAME_PATTERN, self.stream):
            msg = "--stream must be a stream name of the contract"
            raise RejectionLookupError(msg)

    def matches(self, rejection: Rejection) -> bool:
        """True when the rejection passes every filter of the query."""
        if self.request_id is not None and self.request_id not in (
            rejection.request_id,
            rejection.source,
        ):
            return False
        if self.reasons and rejection.reason not in self.reasons:
            return False
        at = rejection.rejected_at
        if self.since_ms is not None and (at is None or at < self.since_ms):
            return False
        return self.until_ms is None or (at is not None and at < self.until_ms)


def find_rejections(
    kafka: KafkaSettings, query: RejectionQuery, *, timeout_s: float = READ_TIMEOUT_S
) -> tuple[list[str], list[Rejection]]:
    """The DLQ topics read and the matching rejections, oldest first."""
    try:
        consumer = KafkaConsumer(
            **kafka.kafka_python("rejections"),
            group_id=None,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            fetch_max_bytes=FETCH_MAX_BYTES,
        )
    except KafkaError as exc:
        msg = f"cannot reach the Kafka cluster at {kafka.bootstrap} ({type(exc).__name__})"
        raise RejectionLookupError(msg) from exc
    try:
        topics = _dlq_topics(consumer, query)
        tps = [
            TopicPartition(topic, p)
            for topic in topics
            for p in sorted(consumer.partitions_for_topic(topic) or ())
        ]
        matching = _matching(consumer, tps, query, timeout_s) if tps else []
    except KafkaError as exc:
        msg = f"reading the DLQ of {query.contract} failed ({type(exc).__name__}): "
        msg += "the principal needs READ on dlq.<contract>. topics (the admin has it)"
        raise RejectionLookupError(msg) from exc
    finally:
        consumer.close()
    matching.sort(key=lambda r: (r.rejected_at or 0, r.topic, r.partition, r.offset))
    return topics, matching


def _matching(
    consumer: KafkaConsumer, tps: list[TopicPartition], query: RejectionQuery, timeout_s: float
) -> list[Rejection]:
    """The query's rejections in ``tps`` up to their ends as of now, in one pass.

    Each record is filtered as it arrives and dropped unless it matches. ``timeout_s`` is the
    longest wait for the next record, not a limit on the whole read: a DLQ of any size is
    searched while the broker keeps answering.
    """
    starts = dict(consumer.beginning_offsets(tps))
    ends = dict(consumer.end_offsets(tps))
    pending = [tp for tp in tps if starts[tp] < ends[tp]]
    if not pending:
        return []
    consumer.assign(pending)
    for tp in pending:
        consumer.seek(tp, starts[tp])
    found: list[Rejection] = []
    stalled = Deadline(timeout_s)
    while pending:
        if stalled.expired():
            msg = (
                f"reading the DLQ of {query.contract} stalled: nothing arrived for "
                f"{timeout_s:.0f} s (is the broker up?)"
            )
            raise RejectionLookupError(msg)
        batch = consumer.poll(timeout_ms=200, max_records=CHUNK_RECORDS)
        for tp, records in batch.items():
            end = ends[tp]
            found.extend(
                r
                for r in map(rejection_of, (x for x in records if x.offset < end))
                if query.matches(r)
            )
        if batch:
            stalled = Deadline(timeout_s)
        done = [tp for tp in pending if consumer.position(tp) >= ends[tp]]
        if done:
            consumer.pause(*done)  # read to their end as of the start: fetch no more of them
            pending = [tp for tp in pending if tp not in done]
    return found


def _dlq_topics(consumer: KafkaConsumer, query: RejectionQuery) -> list[str]:
    prefix = f"dlq.{query.contract}."
    if query.stream is not None:
        wanted = [prefix + query.stream]
        present = [t for t in wanted if t in consumer.topics()]
    else:
        present = sorted(t for t in consumer.topics() if _stream_of(t, prefix))
    if not present:
        where = prefix + (query.stream or "<stream>")
        msg = (
            f"no DLQ topic {where} visible: check the contract id and stream, that "
            "`respublica apply` ran, and that the principal may describe dlq. topics"
        )
        raise RejectionLookupError(msg)
    return present


def _stream_of(topic: str, prefix: str) -> bool:
    rest = topic[len(prefix) :]
    return topic.startswith(prefix) and bool(re.fullmatch(NAME_PATTERN, rest))


def rejection_of(record: ConsumerRecord) -> Rejection:
    """What a DLQ record's headers say; a header that is not printable ASCII shows as ``?``."""
    headers = {name: value for name, value in record.headers or ()}

    def text(name: str) -> str:
        raw = headers.get(name) or b""
        value = raw.decode("utf-8", "replace")
        # Headers are written by respublica and hold codes and names of ours; anything
        # else (a forged record, a terminal escape) is not echoed.
        return value if _SAFE_TEXT.fullmatch(value) else "?"

    def number(name: str) -> int | None:
        value = text(name)
        return int(value) if value.isdigit() else None

    return Rejection(
        topic=record.topic,
        partition=record.partition,
        offset=record.offset,
        rejected_at=number(H_REJECTED_AT),
        stream=text(H_STREAM),
        reason=text(H_REASON),
        field=text(H_FIELD),
        stage=text(H_STAGE),
        source=text(H_SOURCE),
        connector=text(H_CONNECTOR),
        original_bytes=number(H_ORIGINAL_BYTES),
        original_sha256=text(H_ORIGINAL_SHA256),
        detail=_detail(headers.get(H_DETAIL)),
    )


def _detail(raw: bytes | None) -> str:
    """The hint header: a fixed sentence of ours (spaces allowed), else not echoed."""
    value = (raw or b"").decode("utf-8", "replace")
    return value if re.fullmatch(r"[ -~]{0,200}", value) else "?"


COLUMNS = (
    "rejected_at",
    "stream",
    "reason",
    "field",
    "stage",
    "source",
    "connector",
    "bytes",
    "detail",
)


def render_text(topics: Sequence[str], rejections: Sequence[Rejection], limit: int) -> str:
    """A table of the rejections (the last ``limit``) and a count per reason."""
    shown = list(rejections[-limit:]) if limit > 0 else []
    rows = [COLUMNS] + [_row(r) for r in shown]
    widths = [max(len(row[i]) for row in rows) for i in range(len(COLUMNS))]
    lines = (
        [
            "  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip()
            for row in rows
        ]
        if shown
        else []
    )
    if len(rejections) > len(shown):
        lines.append(
            f"... {len(rejections) - len(shown)} earlier rejection(s) not shown "
            "(narrow with --since/--until/--reason, or raise --limit)"
        )
    lines.append(_summary(topics, rejections))
    return "\n".join(lines)


def render_json(rejections: Iterable[Rejection]) -> str:
    """One JSON object per line."""
    return "\n".join(json.dumps(r.as_dict(), sort_keys=True) for r in rejections)


def _row(rejection: Rejection) -> tuple[str, ...]:
    at = iso_utc(rejection.rejected_at) if rejection.rejected_at is not None else "?"
    size = "?" if rejection.original_bytes is None else str(rejection.original_bytes)
    return (
        at,
        rejection.stream,
        rejection.reason,
        rejection.field or "-",
        rejection.stage,
        rejection.source or "-",
        rejection.connector,
        size,
        rejection.detail,
    )


def _summary(topics: Sequence[str], rejections: Sequence[Rejection]) -> str:
    counts = Counter(r.reason for r in rejections)
    by_reason = ", ".join(f"{reason} {n}" for reason, n in counts.most_common())
    read = ", ".join(topics)
    if not rejections:
        return f"no matching rejection in {read}"
    return f"{len(rejections)} rejection(s) in {read}: {by_reason}"
