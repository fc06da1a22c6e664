"""The auditor page's data: ``respublica audit`` run by the web server, its public report kept.

The audit reads the contract's internal topics (raw, DLQ, partials, state, keys) besides its
public ones, so only a principal that may see those (the auditor, ``respublica-auditor``) can
run it: for any other principal the page says so instead of running an audit that would take
topics it may not see for missing ones. The report is the *public* one
(``broker.audit.audience``): the web server is a read-only window that any analyst with the
auditor's link may open, and the confidential counts stay with ``respublica audit --audience
confidential``.

An audit reads every topic of a contract to its end: it runs in a worker thread, one at a time
per contract, when asked (the page's first visit, or its "run again" button); the page shows
the last result and when it was computed.
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
        if current is None or current.report is None:
            return None
        return render(current.report, "html", current.generated_at)

    async def _run(self, contract: Contract, into: AuditResult) -> None:
        try:
            report = await asyncio.to_thread(self._audit, contract)
        except (RespublicaError, KafkaError) as exc:
            into.error = str(exc) if isinstance(exc, RespublicaError) else type(exc).__name__
            log.warning("audit of %s failed: %s", contract.id, into.error)
        else:
            into.report, into.error = report, None
        into.generated_at = datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
        into.running = False

    def _audit(self, contract: Contract) -> dict[str, Any]:
        missing = needed_topics(contract) - visible_topics(self._kafka)
        if missing:
            msg = (
                f"this server's principal ({self._kafka.username or 'anonymous'}) may not read "
                f"the internal topics of {contract.id} that an audit reads: run `respublica "
                "web` with the auditor's credentials (respublica-auditor) for this page"
            )
            raise AuditPermissionError(msg)
        return audit(contract, self._kafka, audience=PUBLIC)


class AuditPermissionError(RespublicaError):
    """The server's principal cannot run an audit of this contract."""
