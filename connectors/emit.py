"""Where pull connectors put what they read: through the validator into raw or DLQ topics.

Pull connectors (GBFS, MDS, rental files, Waze) do not go through ``ingest.`` topics: they
call the same ``StreamValidator`` as the gateway and write its outcome straight to
``raw.<c>.<s>`` or ``dlq.<c>.<s>``, so a file import can report every rejected row at once.
``Emitter`` does that against any ``Sink``; ``KafkaSink`` is the kafka-python one, which
checks in ``flush`` that every record was acknowledged.
"""

from __future__ import annotations

import json
import logging
from collections import Counter
from collections.abc import Callable, Mapping
from typing import Any

from kafka import KafkaProducer
from kafka.errors import KafkaError

from broker.kafka.reasons import Reason
from broker.kafka.settings import KafkaSettings, as_settings
from connectors.base import Accepted, ConnectorError, Headers, Outcome, Rejected, Sink
from connectors.metrics import IngestMetrics
from connectors.validate import Router, dlq_record

_log = logging.getLogger(__name__)


class Emitter:
    """Validates records of one contract and writes the outcomes to a sink."""

    def __init__(
        self,
        router: Router,
        contract_id: str,
        *,
        sink: Sink,
        connector: str,
        clock: Callable[[], int],
        metrics: IngestMetrics | None = None,
    ) -> None:
        self.router = router
        self.contract_id = contract_id
        self.sink = sink
        self.connector = connector
        self.clock = clock
        self.metrics = metrics
        self.accepted: Counter[str] = Counter()  # by stream
        self.rejected: Counter[tuple[str, Reason]] = Counter()  # by stream and reason

    def emit(self, stream: str, record: Mapping[str, Any] | bytes, source: str) -> Outcome:
        """Validate one record (a dict or JSON bytes) and send it to raw or the DLQ."""
        now_ms = self.clock()
        outcome = self.router.validate_json(
            self.contract_id, stream, record, now_ms=now_ms, connector=self.connector, source=source
        )
        if isinstance(outcome, Accepted):
            validator = self.router.validators[(self.contract_id, stream)]
            self.sink.send(validator.raw_topic, outcome.key, outcome.value, outcome.headers)
            self.accepted[stream] += 1
            self._count(stream, None)
            return outcome
        self.reject(stream, record, outcome, source)
        return outcome

    def reject(
        self, stream: str, record: Mapping[str, Any] | bytes, rejected: Rejected, source: str
    ) -> None:
        """Send a record the connector itself refused (or the validator did) to the DLQ."""
        original = record if isinstance(record, bytes) else _as_json(record)
        _, value, headers = dlq_record(
            original,
            rejected,
            contract=self._contract(),
            stream=stream,
            connector=self.connector,
            source=source,
            now_ms=self.clock(),
        )
        self.sink.send(f"dlq.{self.contract_id}.{stream}", None, value, headers)
        self.rejected[(stream, rejected.reason)] += 1
        self._count(stream, rejected.reason)

    def flush(self) -> None:
        """Wait until the sink acknowledged everything sent so far."""
        self.sink.flush()

    def _count(self, stream: str, reason: Reason | None) -> None:
        if self.metrics is not None:
            self.metrics.add(
                self.contract_id,
                stream,
                self.connector,
                received=1,
                rejected={reason: 1} if reason is not None else {},
            )

    def _contract(self) -> Any:
        return self.router.contracts.get(self.contract_id, self.contract_id)


def _as_json(record: Mapping[str, Any]) -> bytes:
    return json.dumps(record, separators=(",", ":"), ensure_ascii=False, default=str).encode(
        "utf-8", "surrogatepass"
    )


class KafkaSink:
    """A ``Sink`` on kafka-python: acks=all, idempotent; ``flush`` checks every send."""

    def __init__(self, kafka: KafkaSettings | str, *, role: str = "connector") -> None:
        settings = as_settings(kafka)
        try:
            self._producer = KafkaProducer(
                **settings.kafka_python(role), acks="all", enable_idempotence=True, linger_ms=10
            )
        except (KafkaError, OSError) as exc:
            msg = f"cannot reach the Kafka cluster at {settings.bootstrap} ({type(exc).__name__})"
            raise ConnectorError(msg) from exc
        self._futures: list[Any] = []

    def send(
        self,
        topic: str,
        key: bytes | None,
        value: bytes,
        headers: Headers,
        timestamp_ms: int | None = None,
    ) -> None:
        """Queue one record."""
        self._futures.append(
            self._producer.send(
                topic, key=key, value=value, headers=headers, timestamp_ms=timestamp_ms
            )
        )

    def flush(self) -> None:
        """Block until every queued record is acknowledged; ``ConnectorError`` if any failed."""
        self._producer.flush(timeout=60)
        futures, self._futures = self._futures, []
        failed = [f for f in futures if not f.succeeded()]
        if failed:
            msg = f"{len(failed)} of {len(futures)} records were not acknowledged by Kafka"
            raise ConnectorError(msg)

    def close(self) -> None:
        """Flush and close the producer."""
        try:
            self.flush()
        finally:
            self._producer.close(timeout=10)
