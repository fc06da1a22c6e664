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

from collections.abc import Mapping

from prometheus_client import CollectorRegistry

from broker.kafka.reasons import Reason
from broker.metrics import metrics_for


class IngestMetrics:
    """The ingested/rejected counters on one registry."""

    def __init__(self, registry: CollectorRegistry) -> None:
        families = metrics_for(registry)  # defined once, in broker/metrics.py
        self.ingested = families.events_ingested
        self.rejected = families.events_rejected

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
