"""Every catalogue metric that ``docs/metrics.md`` says the worker serves has a live sample."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from kafka import KafkaProducer

from broker.deadline import DeadlineExceeded
from broker.metrics import METRIC_NAMES
from connectors.simulate.base import SimOptions, take
from connectors.simulate.navigation import NavigationSimulator
from contracts.model import Contract
from tests.metric_catalogue import PROCESSES, catalogue, missing, served_by
from tests.worker.support import WorkerProcess, events_of, feed, metric_value, wait_for

pytestmark = pytest.mark.integration


def test_the_catalogue_assigns_every_family_to_processes_that_exist() -> None:
    owners = catalogue()
    assert set(owners) == set(METRIC_NAMES)
    assert all(found and found <= set(PROCESSES) for found in owners.values()), owners
    worker = served_by("worker")
    assert {"respublica_consumer_lag", "respublica_contract_info"} <= worker
    assert "respublica_http_requests_total" not in worker


def test_every_worker_metric_has_a_sample_after_a_short_run(
    contract_factory: Callable[..., Contract],
    worker_factory: Callable[..., WorkerProcess],
    producer_factory: Callable[..., KafkaProducer],
) -> None:
    contract = contract_factory("navigation")  # it has a noised view: ε spent and budget
    sim = list(take(NavigationSimulator(SimOptions(seed=4)).records(), 3_000))
    feed(producer_factory(), contract, {s: events_of(sim, s) for s in ("jams", "alerts")})
    worker = worker_factory([contract], "metrics-1")
    worker.start()
    expected = served_by("worker")
    gaps: list[str] = []

    def live() -> bool:
        assert worker.alive(), worker.log_tail()
        if not worker.healthy():
            return False
        gaps[:] = missing(worker.metrics(), expected)
        return not gaps

    try:
        wait_for(live, 120, "a sample of every worker metric", every_s=1.0)
    except DeadlineExceeded:
        pytest.fail(f"no sample of {gaps}")
    text = worker.metrics()
    assert metric_value(text, "respublica_contract_info", contract=contract.id) == 1
    assert metric_value(text, "respublica_contract_days_to_expiry", contract=contract.id) > 0
    assert metric_value(text, "respublica_end_to_end_latency_seconds_count") > 0
    raw_topics = {contract.topic_raw(s) for s in ("jams", "alerts")}
    lags = {t: metric_value(text, "respublica_consumer_lag", topic=t) for t in raw_topics}
    assert all(lag >= 0 for lag in lags.values()), lags
    assert worker.terminate() == 0, worker.log_tail()
