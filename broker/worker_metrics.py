"""Prometheus metrics of a policy worker, on an explicit registry (one per worker, per test).

Labels are contract ids, view and stream names, and closed sets (dispositions): never a data
value. Counters are per process: a worker that restarts from a checkpoint folds the replayed
tail again, so the auditable counts are the suppression reports on the public topics.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from policies.base import ProcessOutcome

# Release delay: from the stage-1 checkpoint that closed the window to the commit of its
# release; the transaction commit alone is ~0.1 s on a local broker.
DELAY_BUCKETS = (0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 5.0, 10.0, 30.0, 60.0)


class WorkerMetrics:
    """Every metric the worker exports."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.events = Counter("respublica_events", "Raw events per view and disposition",
                              ["contract", "view", "disposition"], registry=r)
        self.undecodable = Counter("respublica_worker_undecodable",
                                   "Raw records the worker could not decode (skipped)",
                                   ["contract", "stream"], registry=r)
        self.checkpoints = Counter("respublica_checkpoints", "Stage-1 checkpoints written",
                                   ["contract", "view"], registry=r)
        self.windows = Counter("respublica_windows_released", "Windows released",
                               ["contract", "view"], registry=r)
        self.groups_published = Counter("respublica_groups_published",
                                        "Groups published", ["contract", "view"], registry=r)
        self.groups_suppressed = Counter("respublica_groups_suppressed",
                                         "Groups suppressed (fewer than k subjects)",
                                         ["contract", "view"], registry=r)
        self.withheld = Counter("respublica_windows_withheld",
                                "Windows not published (budget exhausted, contract inactive)",
                                ["contract", "view", "reason"], registry=r)
        self.stale = Gauge("respublica_stale_partials",
                           "Partials that arrived for an already released window",
                           ["contract", "view"], registry=r)
        self.delay = Histogram("respublica_release_delay_seconds",
                               "From the checkpoint closing a window to its committed release",
                               ["contract", "view"], buckets=DELAY_BUCKETS, registry=r)
        self.keys_destroyed = Counter("respublica_keys_destroyed",
                                      "Pseudonym keys destroyed (crypto-shredding)",
                                      ["contract"], registry=r)
        self.held = Gauge("respublica_worker_assignment",
                          "Raw partitions (stage=raw) and views (stage=merge) this worker owns",
                          ["stage"], registry=r)
        self.open_windows = Gauge("respublica_open_windows", "Windows held by the merger",
                                  ["contract", "view"], registry=r)

    def outcome(self, contract: str, view: str, outcome: ProcessOutcome) -> None:
        """Count one ``Aggregator.process`` outcome."""
        for disposition, count in outcome.by_disposition().items():
            if count:
                self.events.labels(contract, view, disposition.value).inc(count)

    def exposition(self) -> bytes:
        """The text format for ``/metrics``."""
        return generate_latest(self.registry)
