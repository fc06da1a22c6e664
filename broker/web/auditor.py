"""The auditor page's data: ``respublica audit`` run by the web server, its public report kept.

The audit reads the contract's internal topics (raw, DLQ, partials, state, keys) besides its
public ones, so only a principal that may see those (the auditor, ``respublica-auditor``) can
run it: for any other principal the page says so instead of running an audit that would take
topics it may not see for missing ones. The report is the *public* one
(``broker.audit.audience``): the web server is a read-only window that any analyst with the
auditor's link may open, and the confidential counts stay with ``respublica audit --audience
confidential``.

An audit reads every topic of a contract to its end: it runs in a worker thread, one at a time
per contract, when asked (the page's first visit, or its "run again" button, a POST); the page
shows the last result and when it was computed. The HTML report is rendered once per run, in
that thread, never per request on the event loop.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from kafka.errors import KafkaError

from broker.audit.audience import PUBLIC
from broker.audit.render import render
from broker.audit.run import audit
from broker.kafka import topics
from broker.kafka.settings import KafkaSettings
from broker.web.access import visible_topics
from contracts.errors import RespublicaError
from contracts.model import Contract

log = logging.getLogger(__name__)


@dataclass
class AuditResult:
    """The last audit of one contract (or why there is none)."""

    report: dict[str, Any] | None = None
    html: str | None = None
    generated_at: str | None = None
    error: str | None = None
    running: bool = False

    def to_json(self) -> dict[str, Any]:
        """What ``/api/audit/<c>`` returns."""
        return {
            "running": self.running,
            "generated_at": self.generated_at,
            "error": self.error,
            "report": self.report,
        }


def needed_topics(contract: Contract) -> set[str]:
    """The internal topics an audit reads besides the public ones."""
    return {topics.keys_topic(contract), *(contract.topic_raw(s) for s in contract.streams)}


class AuditDesk:
    """One ``AuditResult`` per contract, refreshed in a thread on request."""

    def __init__(self, kafka: KafkaSettings) -> None:
        self._kafka = kafka
        self._results: dict[str, AuditResult] = {}
        self._tasks: set[asyncio.Task[None]] = set()

    def result(self, contract: Contract, *, refresh: bool = False) -> AuditResult:
        """The last result; starts an audit if there is none yet or ``refresh``."""
        current = self._results.setdefault(contract.id, AuditResult())
        if not current.running and (refresh or current.generated_at is None):
            current.running = True
            task = asyncio.get_running_loop().create_task(self._run(contract, current))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        return current

    def html(self, contract: Contract) -> str | None:
        """The full public report as one HTML page, if an audit has run."""
        current = self._results.get(contract.id)
        return None if current is None else current.html

    async def _run(self, contract: Contract, into: AuditResult) -> None:
        generated_at = datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
        try:
            report, page = await asyncio.to_thread(self._audit, contract, generated_at)
        except (RespublicaError, KafkaError) as exc:
            into.error = str(exc) if isinstance(exc, RespublicaError) else type(exc).__name__
            log.warning("audit of %s failed: %s", contract.id, into.error)
        else:
            into.report, into.html, into.error = report, page, None
        into.generated_at = generated_at
        into.running = False

    def _audit(self, contract: Contract, generated_at: str) -> tuple[dict[str, Any], str]:
        missing = needed_topics(contract) - visible_topics(self._kafka)
        if missing:
            msg = (
                f"this server's principal ({self._kafka.username or 'anonymous'}) may not read "
                f"the internal topics of {contract.id} that an audit reads: run `respublica "
                "web` with the auditor's credentials (respublica-auditor) for this page"
            )
            raise AuditPermissionError(msg)
        report = audit(contract, self._kafka, audience=PUBLIC)
        return report, render(report, "html", generated_at)


class AuditPermissionError(RespublicaError):
    """The server's principal cannot run an audit of this contract."""
