"""Linked views on the real broker: the rentals example's districts and cells, released with
secondary suppression, equal the batch oracle, and a SIGKILL changes nothing.

The demo's rentals data (seed 2026) has two windows where every district is published and one
cell of one listing is not: without secondary suppression, subtracting the cells from the
districts gives that listing's month. Each view's merger takes the decision on its own, from the
atoms both views' partials carry (``policies.secondary``), so no release waits for the other
view: the test checks that both views published exactly what the oracle (which decides with its
own code path) releases, with and without a crash, and that the audit's attacker pins nothing.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from kafka import KafkaProducer

from broker.audit.run import audit
from broker.kafka.public_reader import read_view
from connectors.simulate import SimOptions, simulator, take
from contracts.model import Contract
from policies.oracle import evaluate
from policies.pseudonymise import KeyRing
from tests.worker.support import (
    PublicView,
    WorkerProcess,
    dumps,
    encode_raw,
    expected_windows,
    produce_end_of_stream,
    produce_raw,
    read_public,
    wait_for,
)

pytestmark = pytest.mark.integration

STREAM = "activity"
VIEWS = ("nights_by_district", "nights_by_cell")
STAYS = 12_000  # what the demo pushes (seed 2026)
PARTITIONS = 2


def _published(
    bootstrap: str, contract: Contract, expected: dict[str, Any]
) -> dict[str, PublicView]:
    seen: dict[str, PublicView] = {}

    def complete() -> bool:
        for view in VIEWS:
            seen[view] = read_public(bootstrap, contract, view)
        return all(set(expected[v]) <= set(seen[v].windows) for v in VIEWS)

    wait_for(complete, 120, "every window of both views")
    return seen


def _start(
    contract: Contract,
    producer: KafkaProducer,
    worker: WorkerProcess,
    stays: list[dict[str, Any]],
) -> None:
    produce_raw(producer, contract.topic_raw(STREAM), encode_raw(contract, STREAM, stays))
    produce_end_of_stream(producer, contract.topic_raw(STREAM), PARTITIONS)
    worker.start()


def _crash(contract: Contract, worker: WorkerProcess, bootstrap: str) -> None:
    """Killed as soon as one view has released anything, and restarted."""
    wait_for(lambda: read_public(bootstrap, contract, VIEWS[1]).records > 0, 120, "a release")
    worker.kill()
    worker.start()


def _finish(
    contract: Contract, worker: WorkerProcess, bootstrap: str, stays: list[dict[str, Any]]
) -> dict[str, PublicView]:
    expected = {v: expected_windows(contract, {STREAM: stays}, v) for v in VIEWS}
    seen = _published(bootstrap, contract, expected)
    for view in VIEWS:
        assert seen[view].windows == expected[view], (view, dumps(seen[view].windows))
        assert seen[view].duplicates == 0
    assert worker.terminate() == 0, worker.log_tail()
    return seen


def test_linked_views_are_released_as_the_oracle_decides_and_a_crash_changes_nothing(
    contract_factory: Callable[..., Contract],
    worker_factory: Callable[..., WorkerProcess],
    producer_factory: Callable[..., KafkaProducer],
    kafka_bootstrap: str,
) -> None:
    stays = [s.record for s in take(simulator("rentals", SimOptions(seed=2026)).records(), STAYS)]
    producer = producer_factory()
    # The run without a crash and the crashed one (contracts of their own) side by side.
    started: dict[bool, tuple[Contract, WorkerProcess]] = {}
    for crash in (False, True):
        contract = contract_factory("rentals", partitions=PARTITIONS)
        worker = worker_factory([contract], f"linked-{crash}")
        _start(contract, producer, worker, stays)
        started[crash] = (contract, worker)
    _crash(*started[True], kafka_bootstrap)
    runs = {}
    for crash, (contract, worker) in started.items():
        runs[crash] = _finish(contract, worker, kafka_bootstrap, stays)
        oracle = evaluate(contract, {STREAM: stays}, keyring=KeyRing())
        secondary = {
            v: {r.window.start: r.report.groups_secondary for r in oracle[v]} for v in VIEWS
        }
        assert sum(n for by_window in secondary.values() for n in by_window.values()) == 2
        for view in VIEWS:  # the public report states the secondary suppressions apart
            reports = read_view(kafka_bootstrap, contract, view).reports
            assert {r.window_start: r.groups_secondary for r in reports} == secondary[view]
        report = audit(contract, kafka_bootstrap, audience="confidential")
        violations = [f for f in report["findings"] if f["severity"] == "violation"]
        assert violations == []
        assert not [f for f in report["findings"] if f["code"] == "over-suppressed"]
        (linked,) = report["linked"]["sets"]
        assert linked["views"] == list(VIEWS) and linked["checked"]
        assert linked["windows"] == 3 and linked["withheld_groups"] > 0
        assert linked["pinned_below_k"] == 0
    assert {v: runs[True][v].windows for v in VIEWS} == {v: runs[False][v].windows for v in VIEWS}
