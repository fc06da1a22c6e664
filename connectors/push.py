"""Client side of ingestion: push NDJSON lines to the HTTP gateway or to ``ingest.`` topics.

Used by ``respublica simulate``, ``replay`` and the load generator. Lines are grouped per
stream into batches (500 by default, one HTTP request each); ``rate`` caps events per second.
The gateway's answers are tallied (accepted, rejected by reason, status codes, latencies):
the tallies hold reason codes and counts only, never an event value.

A batch answered 5xx, 429 or 408, or not answered, is sent again with backoff
(``connectors.retry``); a batch is never dropped: when the retries run out, ``NotDelivered``
names the first line of input that the gateway has not acknowledged, so ``replay
--from-line`` resumes without losing or repeating a line.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import aiohttp
from kafka import KafkaProducer
from kafka.errors import KafkaError

from broker.kafka.settings import KafkaSettings, as_settings
from connectors.base import ConnectorError
from connectors.retry import (
    RetryPolicy,
    TransientError,
    retry_after_seconds,
    transient_status,
    with_retries,
)
from policies.pseudonymise import canonical_id

NDJSON = "application/x-ndjson"


@dataclass
class PushStats:
    """What a push did: counts, reasons, statuses and request latencies (seconds)."""

    sent: int = 0
    accepted: int = 0
    # 5xx/429/408 answers and network failures met; retried while the policy allowed. Only
    # the final answer of a batch counts in ``statuses``.
    transient: int = 0
    rejected: Counter[str] = field(default_factory=Counter)
    statuses: Counter[int] = field(default_factory=Counter)
    latencies: list[float] = field(default_factory=list)
    elapsed_s: float = 0.0

    def summary(self) -> str:
        """One line for the terminal."""
        reasons = ", ".join(f"{r}={n}" for r, n in sorted(self.rejected.items())) or "none"
        statuses = ", ".join(f"{s}x{n}" for s, n in sorted(self.statuses.items())) or "-"
        rate = self.sent / self.elapsed_s if self.elapsed_s else 0.0
        retried = f"; {self.transient} transient failures retried" if self.transient else ""
        return (
            f"sent {self.sent} events in {self.elapsed_s:.1f}s ({rate:,.0f}/s): "
            f"{self.accepted} accepted; rejected: {reasons}; HTTP: {statuses}{retried}"
        )


class NotDelivered(ConnectorError):
    """A batch was not acknowledged after every retry; ``resume_line`` is the first input line
    (1-based) not known to be stored, None when the lines carried no numbers."""

    def __init__(self, reason: str, resume_line: int | None) -> None:
        self.resume_line = resume_line
        where = (
            f"; lines from {resume_line} on were not acknowledged: "
            f"resume with --from-line {resume_line}"
            if resume_line is not None
            else ""
        )
        super().__init__(f"the gateway did not take a batch ({reason}){where}")


class RateLimit:
    """Sleeps so that no more than ``rate`` events per second go out (None: no limit)."""

    def __init__(self, rate: float | None) -> None:
        self.rate = rate
        self._start = time.monotonic()
        self._count = 0

    async def wait(self, events: int) -> None:
        """Account for ``events`` about to be sent, sleeping first if ahead of the rate."""
        if self.rate:
            ahead = self._start + self._count / self.rate - time.monotonic()
            if ahead > 0:
                await asyncio.sleep(ahead)
        self._count += events


class GatewayPusher:
    """Batches lines per stream and POSTs them to ``/v1/contracts/<c>/streams/<s>/events``."""

    def __init__(
        self,
        base_url: str,
        token: str,
        contract_id: str,
        *,
        batch: int = 500,
        rate: float | None = None,
        timeout_s: float = 60.0,
        retry: RetryPolicy | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.contract_id = contract_id
        self.batch = batch
        self.retry = retry or RetryPolicy()
        self.stats = PushStats()
        self._headers = {"Authorization": f"Bearer {token}", "Content-Type": NDJSON}
        self._pending: dict[str, list[bytes]] = {}
        self._first_line: dict[str, int | None] = {}  # input line of each pending batch's start
        self._limit = RateLimit(rate)
        self._timeout = aiohttp.ClientTimeout(total=timeout_s)
        self._session: aiohttp.ClientSession | None = None
        self._started = time.monotonic()

    async def __aenter__(self) -> GatewayPusher:
        self._session = aiohttp.ClientSession(timeout=self._timeout)
        self._started = time.monotonic()
        return self

    async def __aexit__(self, *exc: object) -> None:
        try:
            if exc[0] is None:
                await self.flush()
        finally:
            if self._session is not None:
                await self._session.close()
            self.stats.elapsed_s = time.monotonic() - self._started

    async def add(self, stream: str, line: bytes, line_number: int | None = None) -> None:
        """Queue one line (``line_number``: where it is in the input, for resuming); sends the
        stream's batch when it is full."""
        pending = self._pending.setdefault(stream, [])
        if not pending:
            self._first_line[stream] = line_number
        pending.append(line)
        if len(pending) >= self.batch:
            await self._send(stream)

    async def flush(self) -> None:
        """Send every partial batch."""
        for stream, lines in list(self._pending.items()):
            if lines:
                await self._send(stream)

    async def _send(self, stream: str) -> None:
        # The batch stays pending until acknowledged, so a failure can name where to resume.
        try:
            await self.post(stream, self._pending[stream])
        except TransientError as exc:
            starts = [n for s, n in self._first_line.items() if n is not None and self._pending[s]]
            raise NotDelivered(str(exc), min(starts, default=None)) from exc
        self._pending[stream] = []
        self._first_line[stream] = None

    async def post(self, stream: str, lines: list[bytes]) -> dict[str, Any]:
        """POST one batch, retrying 5xx, 429, 408 and network failures within ``retry``;
        returns the gateway's JSON answer (``{}`` if it was not JSON).

        Raises ``TransientError`` when the retries run out.
        """
        if self._session is None:
            msg = "use GatewayPusher in 'async with'"
            raise ConnectorError(msg)
        await self._limit.wait(len(lines))
        url = f"{self.base_url}/v1/contracts/{self.contract_id}/streams/{stream}/events"
        body = b"\n".join(lines)
        started = time.perf_counter()
        session = self._session
        status, answer = await with_retries(lambda: self._post_once(session, url, body), self.retry)
        self.stats.latencies.append(time.perf_counter() - started)
        return self._tally(status, answer, len(lines))

    async def _post_once(
        self, session: aiohttp.ClientSession, url: str, data: bytes
    ) -> tuple[int, bytes]:
        try:
            async with session.post(url, data=data, headers=self._headers) as response:
                body = await response.read()
                status = response.status
                retry_after = response.headers.get("Retry-After")
        except (aiohttp.ClientError, TimeoutError) as exc:
            self.stats.transient += 1
            msg = f"the gateway did not answer ({type(exc).__name__})"
            raise TransientError(msg) from exc
        if transient_status(status):
            self.stats.transient += 1
            msg = f"HTTP {status}"
            raise TransientError(msg, retry_after_seconds(retry_after))
        return status, body

    def _tally(self, status: int, body: bytes, count: int) -> dict[str, Any]:
        self.stats.sent += count
        self.stats.statuses[status] += 1
        try:
            answer = json.loads(body)
        except ValueError:
            return {}
        if status == 200:
            self.stats.accepted += int(answer.get("accepted", 0))
            self.stats.rejected.update(r["reason"] for r in answer.get("rejected", []))
        else:
            self.stats.rejected[str(answer.get("error", status))] += count
        return dict(answer)


class KafkaIngestPusher:
    """Produces lines as JSON values to ``ingest.<c>.<s>``, keyed by the subject when known."""

    def __init__(
        self, kafka: KafkaSettings | str, contract_id: str, subjects: dict[str, str]
    ) -> None:
        settings = as_settings(kafka)
        self.contract_id = contract_id
        self.subjects = subjects  # stream -> subject field
        self.stats = PushStats()
        self._futures: list[tuple[int | None, Any]] = []
        self._started = time.monotonic()
        try:
            self._producer = KafkaProducer(
                **settings.kafka_python("push"), acks="all", enable_idempotence=True, linger_ms=20
            )
        except (KafkaError, OSError) as exc:
            msg = f"cannot reach the Kafka cluster at {settings.bootstrap} ({type(exc).__name__})"
            raise ConnectorError(msg) from exc

    def add(self, stream: str, line: bytes, line_number: int | None = None) -> None:
        """Queue one line for ``ingest.<c>.<stream>`` (``line_number``: for resuming)."""
        topic = f"ingest.{self.contract_id}.{stream}"
        key = _subject_key(line, self.subjects.get(stream))
        self._futures.append((line_number, self._producer.send(topic, value=line, key=key)))
        self.stats.sent += 1

    def close(self) -> None:
        """Flush, check every send, close. ``ConnectorError`` if any was not acknowledged,
        naming the first line to resume from when the lines had numbers."""
        try:
            self._producer.flush(timeout=60)
            failed = [n for n, f in self._futures if not f.succeeded()]
        finally:
            self._producer.close(timeout=10)
            self.stats.elapsed_s = time.monotonic() - self._started
        if failed:
            numbers = [n for n in failed if n is not None]
            # Later lines may be stored already: resending them is harmless (their event ids
            # count once), losing them is not.
            resume = f": resume with --from-line {min(numbers)}" if numbers else ""
            msg = (
                f"{len(failed)} of {len(self._futures)} records were not acknowledged by "
                f"Kafka{resume}"
            )
            raise ConnectorError(msg)
        self.stats.accepted = len(self._futures)


def _subject_key(line: bytes, subject: str | None) -> bytes | None:
    """The subject as partition key, so one subject's events stay in order; None if unknown."""
    if subject is None:
        return None
    try:
        value = json.loads(line).get(subject)
    except (ValueError, AttributeError, UnicodeDecodeError):
        return None
    # The canonical form, as the validator keys raw: every spelling of a subject stays together.
    return canonical_id(value).encode() if isinstance(value, str | int) else None


def read_lines(lines: Iterable[bytes]) -> Iterable[bytes]:
    """Non-blank lines without their line ending."""
    for _, line in numbered_lines(lines):
        yield line


def numbered_lines(lines: Iterable[bytes], first: int = 1) -> Iterable[tuple[int, bytes]]:
    """``(line number, line)`` of the non-blank lines from line ``first`` on (1-based; blank
    lines count, so numbers match an editor's), without their line ending."""
    for number, line in enumerate(lines, start=1):
        if number < first:
            continue
        stripped = line.rstrip(b"\r\n")
        if stripped.strip():
            yield number, stripped
