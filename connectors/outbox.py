"""Where pull connectors put what they read: validated, then delivered until Kafka acknowledges.

A poller emits the records of one page or snapshot into an ``Outbox`` (the validator runs
once per record, through ``connectors.emit.Emitter``, so metrics and the duplicate filter
see each record once), then awaits ``deliver()``: it returns only when Kafka acknowledged the
whole batch, raw and DLQ records alike. While Kafka is away it waits (doubling, up to
``Backoff.max_s``), replaces its producer (a failed idempotent producer is not reused) and
sends the *same* validated batch again; it does not give up on an outage, so a poller never
moves its position (checkpoint, snapshot tracker) past records Kafka has not acknowledged.
Records of a batch that did reach Kafka before a failure are sent again: event ids make that
harmless. Cancelling ``deliver()`` (SIGTERM) is immediate; nothing undelivered is marked as
sent.

A refusal that waiting cannot heal raises ``UndeliverableBatch`` at once instead: a record
over the broker's size limit, credentials the broker refuses (SASL authentication; aiokafka
reports that as "unable to bootstrap", so the outbox asks the broker once more with one
plain connection to tell it from an outage), or an ACL that does not let the principal
write. ``respublica connect`` then exits 1 with the message; the position has not moved.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from aiokafka import errors as kafka_errors
from aiokafka.conn import create_conn, get_ip_port_afi

from broker.kafka.reasons import Reason
from broker.kafka.settings import as_settings
from broker.kafka.writer import (
    BatchWriter,
    KafkaBatchWriter,
    KafkaUnavailable,
    OutRecord,
    close_within,
)
from connectors.base import ConnectorError, Headers, Outcome, Rejected
from connectors.emit import Emitter
from connectors.metrics import IngestMetrics
from connectors.poll import Clock
from connectors.validate import Router

_log = logging.getLogger(__name__)
CLOSE_TIMEOUT_S = 1.0  # a stop must be prompt: what is not acknowledged is read again
PROBE_TIMEOUT_S = 10.0  # one connection to tell refused credentials from an outage
_TOO_LARGE = (kafka_errors.MessageSizeTooLargeError, kafka_errors.RecordTooLargeError)
_NOT_ALLOWED = (
    kafka_errors.TopicAuthorizationFailedError,
    kafka_errors.ClusterAuthorizationFailedError,
    kafka_errors.TransactionalIdAuthorizationFailed,
    kafka_errors.GroupAuthorizationFailedError,
)
_NOT_AUTHENTICATED = (
    kafka_errors.SaslAuthenticationFailed,
    kafka_errors.AuthenticationFailedError,
    kafka_errors.AuthenticationMethodNotSupported,
    kafka_errors.UnsupportedSaslMechanismError,
    kafka_errors.IllegalSaslStateError,
)


class UndeliverableBatch(ConnectorError):
    """Kafka refused a batch for a reason that no wait will change (size, credentials, ACLs)."""


@dataclass(frozen=True)
class Backoff:
    """Waits between deliveries while Kafka is away: ``initial_s`` doubling up to ``max_s``."""

    initial_s: float = 0.5
    max_s: float = 30.0


class _PendingSink:
    """A ``Sink`` that keeps records until the outbox delivers them."""

    def __init__(self) -> None:
        self.records: list[OutRecord] = []

    def send(
        self,
        topic: str,
        key: bytes | None,
        value: bytes,
        headers: Headers,
        timestamp_ms: int | None = None,
    ) -> None:
        self.records.append(OutRecord(topic, key, value, list(headers)))

    def flush(self) -> None:
        """Nothing to do: ``Outbox.deliver`` sends."""


class Outbox:
    """Validates one contract's records and delivers them to Kafka, retrying until acked."""

    def __init__(
        self,
        router: Router,
        contract_id: str,
        *,
        writer: Callable[[], BatchWriter],
        connector: str,
        clock: Clock,
        metrics: IngestMetrics | None = None,
        backoff: Backoff | None = None,
    ) -> None:
        self._pending = _PendingSink()
        self.emitter = Emitter(
            router,
            contract_id,
            sink=self._pending,
            connector=connector,
            clock=clock.now_ms,
            metrics=metrics,
        )
        self._new_writer = writer
        self._writer: BatchWriter | None = None
        self.clock = clock
        self.backoff = backoff or Backoff()
        self.delivered = 0  # records Kafka acknowledged (raw and DLQ)
        self.failures = 0  # deliveries Kafka did not acknowledge (each retried)

    @property
    def contract_id(self) -> str:
        """The contract whose streams this outbox feeds."""
        return self.emitter.contract_id

    def emit(self, stream: str, record: Mapping[str, Any] | bytes, source: str) -> Outcome:
        """Validate one record and queue it for raw or the DLQ; the outcome says which."""
        return self.emitter.emit(stream, record, source)

    def reject(
        self, stream: str, record: Mapping[str, Any] | bytes, rejected: Rejected, source: str
    ) -> None:
        """Queue a record the connector itself refused for the DLQ."""
        self.emitter.reject(stream, record, rejected, source)

    @property
    def accepted(self) -> int:
        """Records validated into raw so far."""
        return sum(self.emitter.accepted.values())

    @property
    def rejected(self) -> Mapping[tuple[str, Reason], int]:
        """Rejections so far, by stream and reason."""
        return self.emitter.rejected

    async def deliver(self) -> None:
        """Return once Kafka acknowledged every queued record; wait and retry until then, or
        raise ``UndeliverableBatch`` at once when Kafka's refusal cannot heal."""
        records, self._pending.records = self._pending.records, []
        wait = self.backoff.initial_s
        while records:
            writer = self._writer or self._new_writer()
            self._writer = writer
            try:
                await writer.write(records)
            except KafkaUnavailable as exc:
                self.failures += 1
                self._writer = None
                await _close(writer)
                problem = _lasting_problem(exc) or await _refused_credentials(writer, exc)
                if problem is not None:
                    raise UndeliverableBatch(problem) from exc
                _log.warning(
                    "Kafka did not acknowledge %d records (%s); sending them again in %.1fs",
                    len(records),
                    exc,
                    wait,
                )
                await self.clock.sleep(wait)
                wait = min(wait * 2, self.backoff.max_s)
                continue
            self.delivered += len(records)
            return

    async def close(self) -> None:
        """Close the producer (bounded: records still unacknowledged are read again later)."""
        writer, self._writer = self._writer, None
        if writer is not None:
            await _close(writer)


def _lasting_problem(exc: KafkaUnavailable) -> str | None:
    """What is wrong, when Kafka's refusal cannot heal by waiting; None for an outage."""
    cause = exc.__cause__
    name = type(cause).__name__
    if isinstance(cause, _TOO_LARGE):
        return (
            f"Kafka refused a record as too large ({name}): it is over the broker's or the "
            "topic's max.message.bytes; raise that limit (or lower the validator's cap) and "
            "run again"
        )
    if isinstance(cause, _NOT_ALLOWED):
        return (
            f"Kafka does not let this principal write the contract's topics ({name}): run "
            "`respublica apply` for the contract and connect as a principal allowed to write "
            "its raw. and dlq. topics"
        )
    if isinstance(cause, _NOT_AUTHENTICATED):
        return _credentials_message(name)
    return None


def _credentials_message(name: str) -> str:
    return (
        f"Kafka refused the connector's credentials ({name}): check the user and password "
        "of --kafka-config / RESPUBLICA_KAFKA_*"
    )


async def _refused_credentials(writer: BatchWriter, exc: KafkaUnavailable) -> str | None:
    """aiokafka's bootstrap turns a refused login into "unable to bootstrap", as an outage:
    one connection of our own to the first bootstrap server tells the two apart."""
    if not isinstance(exc.__cause__, kafka_errors.KafkaConnectionError) or not isinstance(
        writer, KafkaBatchWriter
    ):
        return None
    settings = as_settings(writer.settings.kafka)
    options = settings.aiokafka(writer.settings.role)
    host, port, _ = get_ip_port_afi(settings.bootstrap.split(",")[0].strip())
    try:
        conn = await asyncio.wait_for(
            create_conn(
                host,
                port,
                client_id=options["client_id"],
                request_timeout_ms=int(PROBE_TIMEOUT_S * 1000),
                ssl_context=options.get("ssl_context"),
                security_protocol=options["security_protocol"],
                sasl_mechanism=options.get("sasl_mechanism"),
                sasl_plain_username=options.get("sasl_plain_username"),
                sasl_plain_password=options.get("sasl_plain_password"),
            ),
            PROBE_TIMEOUT_S,
        )
    except _NOT_AUTHENTICATED as refused:
        return _credentials_message(type(refused).__name__)
    except Exception as other:  # unreachable, timed out: an outage, waited out as such
        _log.debug("Kafka probe failed: %s", type(other).__name__)
        return None
    conn.close()
    return None


async def _close(writer: BatchWriter) -> None:
    await close_within(writer, CLOSE_TIMEOUT_S)
