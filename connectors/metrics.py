"""Ingestion counters, shared by every entry point (Kafka ingest, HTTP gateway, pull connectors).

Create one ``IngestMetrics`` per ``CollectorRegistry`` and pass it to every connector of the
process, so the metric families are registered once. Label values are contract ids, stream
names, connector names and reason codes: all ours, never a value from a payload (an unknown
contract id sent by a provider is counted under ``contract=""``).

``respublica_events_ingested_total`` counts every payload received for a stream, accepted or
not; ``respublica_events_rejected_total`` counts the rejected ones by reason. Accepted events
are the difference, which is what an auditor reconciles against the published windows.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from prometheus_client import CollectorRegistry

from broker.kafka.reasons import Reason, Stage
from broker.metrics import metrics_for
from contracts.model import Contract


class IngestMetrics:
    """The ingested/rejected counters on one registry."""

    def __init__(self, registry: CollectorRegistry) -> None:
        families = metrics_for(registry)  # defined once, in broker/metrics.py
        self.ingested = families.events_ingested
        self.rejected = families.events_rejected

    def declare(self, contracts: Iterable[Contract], source: str) -> None:
        """Create the series of every stream of ``contracts`` at zero, before any event:
        ingested through ``source``, and rejected for every reason a known stream can have
        (not the routing ones, counted where the contract or stream is unknown). A series
        born at 1 hides its first increment from Prometheus' ``increase()``, and a reason never
        seen should read 0, not "no data"."""
        reasons = [r for r in Reason if r.stage is not Stage.ROUTE]
        for contract in contracts:
            for stream in contract.streams:
                self.ingested.labels(contract.id, stream.name, source)
                for reason in reasons:
                    self.rejected.labels(contract.id, stream.name, reason.value)

    def add(
        self,
        contract_id: str,
        stream: str,
        source: str,
        *,
        received: int,
        rejected: Mapping[Reason, int],
    ) -> None:
        """Count a batch: ``received`` payloads, of which ``rejected`` by reason."""
        if received:
            self.ingested.labels(contract_id, stream, source).inc(received)
        for reason, count in rejected.items():
            if count:
                self.rejected.labels(contract_id, stream, reason.value).inc(count)
