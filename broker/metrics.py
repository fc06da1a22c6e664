"""Every compliance metric respublica exposes, defined once (``docs/metrics.md`` explains each).

Each process (gateway, validator, worker) builds one :class:`Metrics` on an explicit
``CollectorRegistry`` and serves it at ``/metrics``. Labels are limited to contract, stream,
view, reason, source, topic and period, whose values come from contracts and code, never from
event data; ``contract_info`` carries the contract's own public terms.
"""

from __future__ import annotations

import weakref
from dataclasses import dataclass
from datetime import datetime

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from contracts.model import Contract
from contracts.policy_hash import short_policy_hash

# Window releases happen seconds after the watermark; end-to-end includes the window itself.
RELEASE_DELAY_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0)
LATENCY_BUCKETS = (0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 30.0, 60.0, 300.0, 900.0, 3600.0, 86400.0)


@dataclass(frozen=True)
class Metrics:
    """The metric families of one process, all on ``registry``."""

    registry: CollectorRegistry
    events_ingested: Counter
    events_rejected: Counter
    events_late: Counter
    events_folded: Counter
    records_published: Counter
    groups_published: Counter
    groups_suppressed: Counter
    windows_released: Counter
    epsilon_spent: Gauge
    epsilon_budget: Gauge
    window_release_delay: Histogram
    end_to_end_latency: Histogram
    request_latency: Histogram
    http_requests: Counter
    contract_info: Gauge
    days_to_expiry: Gauge
    key_epoch_age: Gauge
    keys_destroyed: Counter
    key_records_rejected: Counter
    gbfs_id_rotation_violations: Counter
    consumer_lag: Gauge

    def render(self) -> bytes:
        """The Prometheus text exposition of this registry."""
        return generate_latest(self.registry)

    def describe_contract(self, contract: Contract, now: datetime) -> None:
        """Publish a contract's terms and the days left before it expires."""
        self.contract_info.labels(
            contract=contract.id,
            provider=contract.provider.id,
            beneficiary=contract.beneficiary.id,
            version=str(contract.version),
            policy_hash=short_policy_hash(contract),
            legal_basis=contract.legal_basis,
        ).set(1)
        remaining = (contract.validity.end - now).total_seconds() / 86400
        self.days_to_expiry.labels(contract=contract.id).set(round(remaining, 3))


def build_metrics(registry: CollectorRegistry | None = None) -> Metrics:
    """Create every metric family on ``registry`` (a fresh one by default)."""
    reg = registry or CollectorRegistry(auto_describe=True)
    stream = ("contract", "stream")
    view = ("contract", "view")
    return Metrics(
        registry=reg,
        events_ingested=Counter(
            "respublica_events_ingested",
            "Events received from providers, per entry point.",
            (*stream, "source"),
            registry=reg,
        ),
        events_rejected=Counter(
            "respublica_events_rejected",
            "Events refused and sent to the DLQ, per reason code.",
            (*stream, "reason"),
            registry=reg,
        ),
        events_late=Counter(
            "respublica_events_late",
            "Events behind an already closed window (never counted).",
            view,
            registry=reg,
        ),
        events_folded=Counter(
            "respublica_events_folded",
            "Events folded into an open window of a view.",
            view,
            registry=reg,
        ),
        records_published=Counter(
            "respublica_records_published", "Records written to public topics.", view, registry=reg
        ),
        groups_published=Counter(
            "respublica_groups_published",
            "Groups released (at least k distinct subjects).",
            view,
            registry=reg,
        ),
        groups_suppressed=Counter(
            "respublica_groups_suppressed",
            "Groups withheld (fewer than k subjects, or budget).",
            view,
            registry=reg,
        ),
        windows_released=Counter(
            "respublica_windows_released",
            "Windows closed and released, per view.",
            view,
            registry=reg,
        ),
        epsilon_spent=Gauge(
            "respublica_epsilon_spent",
            "Differential-privacy epsilon spent in the period.",
            (*view, "period"),
            registry=reg,
        ),
        epsilon_budget=Gauge(
            "respublica_epsilon_budget",
            "Differential-privacy epsilon budget per period.",
            view,
            registry=reg,
        ),
        window_release_delay=Histogram(
            "respublica_window_release_delay_seconds",
            "Wall time between the watermark passing a window's end and its release.",
            view,
            buckets=RELEASE_DELAY_BUCKETS,
            registry=reg,
        ),
        end_to_end_latency=Histogram(
            "respublica_end_to_end_latency_seconds",
            "Wall time from the start of a window (event time) to its publication: the age of "
            "its oldest possible event, window length included.",
            view,
            buckets=LATENCY_BUCKETS,
            registry=reg,
        ),
        request_latency=Histogram(
            "respublica_http_request_seconds",
            "Gateway request latency, per route.",
            ("route",),
            registry=reg,
        ),
        http_requests=Counter(
            "respublica_http_requests",
            "Gateway requests, per route and status code.",
            ("route", "status"),
            registry=reg,
        ),
        contract_info=Gauge(
            "respublica_contract_info",
            "The terms of each contract in force (value 1).",
            ("contract", "provider", "beneficiary", "version", "policy_hash", "legal_basis"),
            registry=reg,
        ),
        days_to_expiry=Gauge(
            "respublica_contract_days_to_expiry",
            "Days left in the contract's validity period.",
            ("contract",),
            registry=reg,
        ),
        key_epoch_age=Gauge(
            "respublica_pseudonym_key_epoch_age_seconds",
            "Age of the oldest pseudonym key still held (bounded by the key retention).",
            ("contract",),
            registry=reg,
        ),
        keys_destroyed=Counter(
            "respublica_keys_destroyed",
            "Pseudonym keys destroyed past retention.",
            ("contract",),
            registry=reg,
        ),
        key_records_rejected=Counter(
            "respublica_key_records_rejected",
            "Records of the key topic ignored because they fail authentication, per reason.",
            ("contract", "reason"),
            registry=reg,
        ),
        gbfs_id_rotation_violations=Counter(
            "respublica_gbfs_id_rotation_violations",
            "GBFS vehicle ids seen unchanged across a trip (the spec requires rotation).",
            ("contract", "source"),
            registry=reg,
        ),
        consumer_lag=Gauge(
            "respublica_consumer_lag",
            "Records not yet consumed, per input topic.",
            ("contract", "topic"),
            registry=reg,
        ),
    )


_BY_REGISTRY: weakref.WeakKeyDictionary[CollectorRegistry, Metrics] = weakref.WeakKeyDictionary()


def metrics_for(registry: CollectorRegistry) -> Metrics:
    """The one ``Metrics`` of ``registry``: every component of a process shares its families."""
    metrics = _BY_REGISTRY.get(registry)
    if metrics is None:
        metrics = _BY_REGISTRY[registry] = build_metrics(registry)
    return metrics


METRIC_NAMES = (
    "respublica_events_ingested_total",
    "respublica_events_rejected_total",
    "respublica_events_late_total",
    "respublica_events_folded_total",
    "respublica_records_published_total",
    "respublica_groups_published_total",
    "respublica_groups_suppressed_total",
    "respublica_windows_released_total",
    "respublica_epsilon_spent",
    "respublica_epsilon_budget",
    "respublica_window_release_delay_seconds",
    "respublica_end_to_end_latency_seconds",
    "respublica_http_request_seconds",
    "respublica_http_requests_total",
    "respublica_contract_info",
    "respublica_contract_days_to_expiry",
    "respublica_pseudonym_key_epoch_age_seconds",
    "respublica_keys_destroyed_total",
    "respublica_key_records_rejected_total",
    "respublica_gbfs_id_rotation_violations_total",
    "respublica_consumer_lag",
)
"""The exposed sample-family names, as ``docs/metrics.md`` lists them."""
