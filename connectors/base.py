"""What every connector produces: an ``Outcome`` per payload, and where outcomes go.

A payload from a provider (HTTP body, Kafka record, a pulled feed item) goes through
``connectors.validate.StreamValidator`` and comes out as exactly one ``Outcome``:

* ``Accepted``: a record ready for ``raw.<c>.<s>`` (Confluent-framed Avro value, the subject
  as key, provenance headers);
* ``Rejected``: a reason code, a field path and a stage, ready for ``dlq.<c>.<s>`` through
  ``connectors.validate.dlq_record``. It never holds a data value, so it can be logged,
  counted and returned in an HTTP response as is.

``Source`` and ``Sink`` are the small protocols connectors are written against, so tests can
drive a connector with lists instead of Kafka or HTTP.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Protocol, TypeAlias

from broker.kafka.reasons import Reason, Stage
from contracts.errors import RespublicaError

Headers: TypeAlias = list[tuple[str, bytes]]


class ConnectorError(RespublicaError):
    """A connector cannot go on (unreachable feed or cluster, bad configuration).

    Per-record problems are never exceptions: they are ``Rejected`` outcomes.
    """


@dataclass(frozen=True, slots=True)
class Accepted:
    """A valid event, encoded for ``raw.<c>.<s>``."""

    key: bytes  # the subject field's value, UTF-8: the partition key
    value: bytes  # Avro in the Confluent wire format (magic 0, schema id, body)
    headers: Headers  # respublica.contract, .contract_version, .stream, .connector, ...
    # The event time, ms since the epoch (UTC), for routing and metrics. Not meant as the Kafka
    # record timestamp: retention and the broker's timestamp bounds work on append time, and
    # a replay of old events would otherwise be deleted as soon as it is written.
    event_time_ms: int


@dataclass(frozen=True, slots=True)
class Rejected:
    """An invalid event: why, where in the payload, and which stage found it. No values."""

    reason: Reason
    field_path: str  # "" when the problem is the payload as a whole
    stage: Stage
    detail: str = ""
    """A fixed hint of ours where the code alone would mislead ("the time looks like
    seconds: send milliseconds"); never a value from the payload."""

    @classmethod
    def of(cls, reason: Reason, field_path: str = "", stage: Stage | None = None) -> Rejected:
        """A rejection at the reason's usual stage unless another one is given."""
        return cls(reason, field_path, stage if stage is not None else reason.stage)

    def describe(self) -> str:
        """``MISSING_FIELD at timestamp (schema)``: safe to log or show to a provider."""
        where = f" at {self.field_path}" if self.field_path else ""
        hint = f": {self.detail}" if self.detail else ""
        return f"{self.reason.value}{where} ({self.stage.value}){hint}"


Outcome: TypeAlias = Accepted | Rejected


@dataclass(frozen=True, slots=True)
class Payload:
    """One raw payload from a source, with where it came from (topic/partition/offset, ...)."""

    data: bytes
    source: str


class Source(Protocol):
    """Something that yields provider payloads (a feed poll, a file, a Kafka batch)."""

    def payloads(self) -> Iterable[Payload]:
        """The next payloads; an empty iterable when there is nothing new."""
        ...


class Sink(Protocol):
    """Where validated and rejected records are written (a Kafka producer, a list in tests)."""

    def send(
        self,
        topic: str,
        key: bytes | None,
        value: bytes,
        headers: Headers,
        timestamp_ms: int | None = None,
    ) -> None:
        """Queue one record for ``topic``."""
        ...

    def flush(self) -> None:
        """Block until every queued record is acknowledged; raise ``ConnectorError`` if not."""
        ...
