"""The vocabulary of an audit report: the period, findings and their severity.

A report is a plain JSON-compatible ``dict`` built by ``broker.audit.run`` (so ``--format json``
is the report itself); the pieces here are what every section shares. Nothing in a report
depends on the wall clock: ``generated_at`` is added outside the body, on request only.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

REPORT_FORMAT = "respublica-audit/1"
HASH_PREFIX = 12  # hex characters of SHA-256 shown instead of an identifier


class Severity(StrEnum):
    """A violation fails the audit (exit code 1); a warning is for a human to look at."""

    VIOLATION = "violation"
    WARNING = "warning"


@dataclass(frozen=True, order=True)
class Finding:
    """One thing the auditor found; ``where`` names a topic/partition/offset, never a value."""

    severity: Severity
    section: str
    code: str
    message: str
    where: str = ""

    def to_dict(self) -> dict[str, Any]:
        """JSON form."""
        out = {
            "severity": self.severity.value,
            "section": self.section,
            "code": self.code,
            "message": self.message,
        }
        if self.where:
            out["where"] = self.where
        return out


class Findings:
    """The findings of one audit, collected by every section."""

    def __init__(self) -> None:
        self._items: set[Finding] = set()

    def violation(self, section: str, code: str, message: str, where: str = "") -> None:
        """Something the contract forbids, or numbers that do not reconcile."""
        self._items.add(Finding(Severity.VIOLATION, section, code, message, where))

    def warning(self, section: str, code: str, message: str, where: str = "") -> None:
        """Something to look at that does not break the contract by itself."""
        self._items.add(Finding(Severity.WARNING, section, code, message, where))

    def sorted(self) -> list[Finding]:
        """Violations first, then by section, code and message (a stable order)."""
        return sorted(
            self._items,
            key=lambda f: (
                f.severity is not Severity.VIOLATION,
                f.section,
                f.code,
                f.message,
                f.where,
            ),
        )

    @property
    def ok(self) -> bool:
        """No violation."""
        return all(f.severity is not Severity.VIOLATION for f in self._items)


@dataclass(frozen=True)
class Period:
    """``[since_ms, until_ms)``; either bound may be open."""

    since_ms: int | None = None
    until_ms: int | None = None

    def contains(self, ms: int) -> bool:
        """``ms`` lies in the period."""
        if self.since_ms is not None and ms < self.since_ms:
            return False
        return self.until_ms is None or ms < self.until_ms

    @property
    def unbounded(self) -> bool:
        """The whole history of the topics."""
        return self.since_ms is None and self.until_ms is None


def fingerprint(text: str) -> str:
    """A SHA-256 prefix: lets two reports name the same identifier without printing it."""
    return "sha256:" + hashlib.sha256(text.encode("utf-8")).hexdigest()[:HASH_PREFIX]


def where(topic: str, partition: int, offset: int, part: str = "") -> str:
    """``topic/partition@offset`` (and which part of the record)."""
    text = f"{topic}/{partition}@{offset}"
    return f"{text} {part}" if part else text


def period_label(start_ms: int, length_ms: int) -> str:
    """``2026-06-01 → 2026-06-02`` (times shown only when a bound is not midnight UTC)."""
    bounds = [datetime.fromtimestamp(ms / 1000, tz=UTC) for ms in (start_ms, start_ms + length_ms)]
    midnight = all(b.hour == b.minute == b.second == 0 for b in bounds)
    shape = "%Y-%m-%d" if midnight else "%Y-%m-%d %H:%M"
    return " → ".join(b.strftime(shape) for b in bounds)
