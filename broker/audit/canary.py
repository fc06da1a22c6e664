"""Canary scan: no raw identifier may appear on a public topic or in a DLQ header.

The needles are the subject identifiers and pseudonymised-field values actually seen on the
contract's raw topics, as sent, in lower case, in upper case and in their canonical form
(``policies.pseudonymise.canonical_id``). The haystacks are, for every
record of every ``public.<c>.<v>``: the key and value bytes, the key and Avro value decoded
(JSON text, so escaped characters are compared unescaped), every header name and value; and
every header of every ``dlq.<c>.<s>`` record (a DLQ *value* is the rejected payload itself).

A hit names the topic, partition, offset and part of the record, and the identifier only by a
SHA-256 prefix. Identifiers shorter than ``MIN_LENGTH`` characters are not scanned (``"42"``
would match any number); how many were left out is reported.

Search is by substring, one set lookup per haystack position and needle length: identifiers
of a stream have a handful of lengths, so a scan costs a few passes over the bytes.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from kafka.consumer.fetcher import ConsumerRecord

from broker.audit.model import Findings, fingerprint, where
from broker.audit.read import TopicRead
from broker.kafka.serde import Schemas, SerializationError, decode
from policies.pseudonymise import canonical_id

SECTION = "canary"
MIN_LENGTH = 6
MAX_LISTED = 50


@dataclass
class Needles:
    """Byte strings to look for, by length, each mapped to the identifier it comes from."""

    by_length: dict[int, dict[bytes, str]] = field(default_factory=dict)
    identifiers: int = 0
    too_short: int = 0

    @classmethod
    def of(cls, identifiers: Iterable[str]) -> Needles:
        """Every identifier as sent, lower- and upper-cased, canonical (short ones left out)."""
        needles = cls()
        for ident in sorted(set(identifiers)):
            if len(ident) < MIN_LENGTH:
                needles.too_short += 1
                continue
            needles.identifiers += 1
            canonical = canonical_id(ident)
            variants = {ident, ident.lower(), ident.upper()}
            if len(canonical) >= MIN_LENGTH:
                variants.add(canonical)
            for variant in variants:
                data = variant.encode("utf-8")
                needles.by_length.setdefault(len(data), {})[data] = ident
        return needles

    def redact(self, name: str) -> str:
        """``name``, or its fingerprint when it holds an identifier (safe to print)."""
        return fingerprint(name) if self.find(name.encode("utf-8", "replace")) else name

    def find(self, haystack: bytes) -> set[str]:
        """The identifiers occurring in ``haystack``."""
        found: set[str] = set()
        size = len(haystack)
        for length, table in self.by_length.items():
            for i in range(size - length + 1):
                ident = table.get(haystack[i : i + length])
                if ident is not None:
                    found.add(ident)
        return found


class CanaryScan:
    """Scans records and collects hits; ``result()`` is the report section."""

    def __init__(self, needles: Needles, schemas: Schemas, findings: Findings) -> None:
        self.needles = needles
        self.schemas = schemas
        self.findings = findings
        self.hits: list[dict[str, str]] = []
        self.scanned = {"public_records": 0, "dlq_records": 0}

    def public(self, topic: TopicRead) -> None:
        """Keys, values (raw and decoded) and headers of every record of a public topic."""
        for record in topic.all():
            self.scanned["public_records"] += 1
            parts: list[tuple[str, bytes]] = [
                ("key", record.key or b""),
                ("value", record.value or b""),
            ]
            parts += [
                ("key (decoded)", _decoded_key(record.key)),
                ("value (decoded)", self._decoded_value(record.value)),
            ]
            parts += self._headers(record)
            self._scan(record, parts)

    def dlq(self, topic: TopicRead) -> None:
        """Only the headers of a DLQ record: its value is the rejected payload."""
        for record in topic.all():
            self.scanned["dlq_records"] += 1
            self._scan(record, self._headers(record))

    def _scan(self, record: ConsumerRecord, parts: list[tuple[str, bytes]]) -> None:
        if not self.needles.by_length:
            return
        for part, data in parts:
            for ident in sorted(self.needles.find(data)):
                place = where(record.topic, record.partition, record.offset, part)
                hit = {"where": place, "identifier": fingerprint(ident)}
                if hit in self.hits:
                    continue
                self.hits.append(hit)
                self.findings.violation(
                    SECTION,
                    "identifier-leak",
                    (f"raw identifier {hit['identifier']} found in {part}"),
                    place,
                )

    def _decoded_value(self, value: bytes | None) -> bytes:
        if not value:
            return b""
        try:
            _, row = decode(value, self.schemas)
        except SerializationError:
            return b""
        return _text(row)

    def _headers(self, record: ConsumerRecord) -> list[tuple[str, bytes]]:
        # A header is named by its position when its name itself holds an identifier.
        out = []
        for i, (name, value) in enumerate(record.headers or []):
            raw_name = name.encode("utf-8", "replace")
            label = f"header #{i}" if self.needles.find(raw_name) else f"header {name}"
            out.append((f"{label} (name)", raw_name))
            out.append((label, value or b""))
        return out

    def result(self) -> dict[str, Any]:
        """Counts, and the hits (capped; the findings list them all)."""
        return {
            "identifiers": self.needles.identifiers,
            "identifiers_too_short": self.needles.too_short,
            "min_length": MIN_LENGTH,
            "scanned": dict(self.scanned),
            "hits": len(self.hits),
            "listed": self.hits[:MAX_LISTED],
        }


def _decoded_key(key: bytes | None) -> bytes:
    if not key:
        return b""
    try:
        return _text(json.loads(key))
    except ValueError:
        return b""


def _text(value: Any) -> bytes:
    return json.dumps(value, ensure_ascii=False, sort_keys=True, default=str).encode("utf-8")
