"""Prometheus metrics of a policy worker, on an explicit registry (one per worker, per test).

Labels are contract ids, view and stream names, and closed sets (dispositions): never a data
value. Counters are per process: a worker that restarts from a checkpoint folds the replayed
tail again, so the auditable counts are the suppression reports on the public topics.
"""

from __future__ import annotations

import threading
from datetime import datetime

from prometheus_client import CollectorRegistry, Counter, Gauge, generate_latest

from broker.metrics import metrics_for
from broker.worker.keyrecords import RejectReason
from contracts.model import Contract
from policies.base import ProcessOutcome


class WorkerMetrics:
    """Every metric the worker exports; the compliance families come from the catalogue."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self._first_lock = threading.Lock()
        self._first_at = 0.0
        self.catalogue = catalogue = metrics_for(r)  # defined once, in broker/metrics.py
        self.windows = catalogue.windows_released
        self.groups_published = catalogue.groups_published
        self.groups_suppressed = catalogue.groups_suppressed
        self.records_published = catalogue.records_published
        self.delay = catalogue.window_release_delay
        self.keys_destroyed = catalogue.keys_destroyed
        self.key_records_rejected = catalogue.key_records_rejected
        self.epsilon_spent = catalogue.epsilon_spent
        self.epsilon_budget = catalogue.epsilon_budget
        self.end_to_end = catalogue.end_to_end_latency
        self.consumer_lag = catalogue.consumer_lag
        self.events = Counter(
            "respublica_view_events",
            "Raw events per view and disposition",
            ["contract", "view", "disposition"],
            registry=r,
        )
        self.undecodable = Counter(
            "respublica_worker_undecodable",
            "Raw records the worker could not decode (skipped)",
            ["contract", "stream"],
            registry=r,
        )
        self.checkpoints = Counter(
            "respublica_checkpoints",
            "Stage-1 checkpoints written",
            ["contract", "view"],
            registry=r,
        )
        self.withheld = Counter(
            "respublica_windows_withheld",
            "Windows not published (budget exhausted, contract inactive)",
            ["contract", "view", "reason"],
            registry=r,
        )
        self.stale = Gauge(
            "respublica_stale_partials",
            "Partials that arrived for an already released window",
            ["contract", "view"],
            registry=r,
        )
        self.held = Gauge(
            "respublica_worker_assignment",
            "Raw partitions (stage=raw) and views (stage=merge) of a contract this worker owns",
            ["contract", "stage"],
            registry=r,
        )
        self.paused = Gauge(
            "respublica_worker_paused_partitions",
            "Raw partitions of a contract paused by event-time flow control (ran ahead)",
            ["contract"],
            registry=r,
        )
        self.first_record = Gauge(
            "respublica_worker_first_record_timestamp_seconds",
            "When this process polled its first raw record (Unix time; 0 before)",
            registry=r,
        )
        self.open_windows = Gauge(
            "respublica_open_windows",
            "Windows held by the merger",
            ["contract", "view"],
            registry=r,
        )

    def serve(self, contract: Contract, now: datetime) -> None:
        """Describe a contract this worker runs and show its views' families from zero.

        A labelled family has no sample until first touched: creating the children now lets
        ``increase()`` see the first late event, and an auditor see a view with no release yet.
        """
        self.catalogue.describe_contract(contract, now)
        self.keys_destroyed.labels(contract.id)
        for reason in RejectReason:
            self.key_records_rejected.labels(contract.id, reason.value)
        self.paused.labels(contract.id)
        for stage in ("raw", "merge"):
            self.held.labels(contract.id, stage)
        for view in contract.views:
            labels = (contract.id, view.name)
            for family in (
                self.catalogue.events_folded,
                self.catalogue.events_late,
                self.windows,
                self.groups_published,
                self.groups_suppressed,
                self.records_published,
                self.delay,
                self.end_to_end,
            ):
                family.labels(*labels)
            if view.noise is not None:
                self.epsilon_budget.labels(*labels).set(view.noise.budget)

    def first_poll(self, at: float) -> None:
        """A raw loop polled records at ``at``: the process's first record, if it is the first
        (each contract has its own raw loop; the earliest of them counts)."""
        with self._first_lock:
            if not self._first_at:
                self._first_at = at
                self.first_record.set(at)

    def outcome(self, contract: str, view: str, outcome: ProcessOutcome) -> None:
        """Count one ``Aggregator.process`` outcome."""
        for disposition, count in outcome.by_disposition().items():
            if count:
                self.events.labels(contract, view, disposition.value).inc(count)
        if outcome.folded:
            self.catalogue.events_folded.labels(contract, view).inc(outcome.folded)
        if outcome.late:
            self.catalogue.events_late.labels(contract, view).inc(outcome.late)

    def exposition(self) -> bytes:
        """The text format for ``/metrics``."""
        return generate_latest(self.registry)
