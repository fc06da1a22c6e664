"""A quiet span is reported, window by window, with 0 groups, on the real broker.

Raw holds events in windows 0, 1 and 10 of a view and, after them, a heartbeat on every
partition (the validator's control record: time has passed to a floor). The worker must report
every window from 0 to the last that ended by the floor: windows 2-9 and 11-13 with 0 groups,
as the batch oracle computes them. A worker killed with SIGKILL as soon as it has published,
and restarted, ends with the same public records as a worker that ran without a crash; a later
heartbeat releases only the windows it closes, once. The audit, which computes the windows due
from the raw topic on its own, finds nothing wrong with either run.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from kafka import KafkaProducer

from broker.audit.run import audit
from broker.kafka.internal import heartbeat_headers
from contracts.model import Contract
from tests.connectors.conftest import vehicle_event
from tests.worker.support import (
    PublicView,
    WorkerProcess,
    dumps,
    encode_raw,
    expected_windows,
    produce_raw,
    read_public,
    wait_for,
)

pytestmark = pytest.mark.integration

STREAM, VIEW = "vehicle_events", "availability"
WINDOW_MS, LATENESS_MS, K = 4_000, 2_000, 2
PARTITIONS = 2
LYON = {"lat": 45.76, "lon": 4.85}
DATA_WINDOWS = (0, 1, 10)
EMPTY_REPORT = (K, 0, 0, None, 0.0)  # k, groups published, suppressed, withheld, ε


def _short_windows(data: dict[str, Any]) -> None:
    for stream in data["streams"]:
        stream["allowed_lateness"] = "PT2S"
    for view in data["views"]:
        if view["name"] == VIEW:
            view.update(time_bucket="PT4S", window="PT4S", k=K)


def _events(base: int) -> list[dict[str, Any]]:
    """Three vehicles in one cell in windows 0, 1 and 10 (a group of 3 ≥ k each)."""
    return [
        vehicle_event(i, vehicle_id=f"veh-{i}", timestamp=base + w * WINDOW_MS + i, **LYON)
        for w in DATA_WINDOWS
        for i in range(3)
    ]


def _heartbeat(producer: KafkaProducer, contract: Contract, floor: int) -> None:
    """What the validator writes: no later record of any partition is older than ``floor``."""
    for partition in range(PARTITIONS):
        producer.send(
            contract.topic_raw(STREAM),
            partition=partition,
            value=b"",
            headers=heartbeat_headers(floor),
        )
    producer.flush(timeout=60)


def _published(bootstrap: str, contract: Contract, expected: dict[Any, Any]) -> PublicView:
    """The public topic once every expected window has its report."""
    seen: list[PublicView] = []

    def complete() -> bool:
        seen[:] = [read_public(bootstrap, contract, VIEW)]
        return set(expected) <= set(seen[0].windows)

    wait_for(complete, 90, "a report of every window")
    return seen[0]


class QuietRun:
    """Events and a heartbeat for one worker (killed once if ``crash``), then a later heartbeat.

    The run without a crash and the crashed one have contracts of their own: they go through
    their steps side by side, each step waiting on its own condition.
    """

    def __init__(
        self,
        contract: Contract,
        producer: KafkaProducer,
        worker: WorkerProcess,
        bootstrap: str,
        base: int,
    ) -> None:
        self.contract, self.producer, self.worker = contract, producer, worker
        self.bootstrap = bootstrap
        self.events = _events(base)
        self.floor = base + 14 * WINDOW_MS + 500  # windows 0..13 have ended by then

    def start(self) -> None:
        topic = self.contract.topic_raw(STREAM)
        produce_raw(self.producer, topic, encode_raw(self.contract, STREAM, self.events))
        _heartbeat(self.producer, self.contract, self.floor)
        self.worker.start()

    def crash(self) -> None:
        """Killed as soon as anything is out: mid-release, or just after."""
        wait_for(
            lambda: read_public(self.bootstrap, self.contract, VIEW).records > 0, 90, "a release"
        )
        self.worker.kill()
        self.worker.start()

    def published(self) -> PublicView:
        """Every window ended by the last heartbeat, as the oracle computes them."""
        expected = expected_windows(
            self.contract, {STREAM: self.events}, VIEW, watermarks={STREAM: self.floor}
        )
        view = _published(self.bootstrap, self.contract, expected)
        assert view.windows == expected, dumps(view.windows)
        return view

    def later_heartbeat(self) -> None:
        self.floor += 3 * WINDOW_MS
        _heartbeat(self.producer, self.contract, self.floor)


def test_a_quiet_span_is_reported_with_zero_groups_and_a_crash_changes_nothing(
    contract_factory: Callable[..., Contract],
    worker_factory: Callable[..., WorkerProcess],
    producer_factory: Callable[..., KafkaProducer],
    kafka_bootstrap: str,
) -> None:
    producer = producer_factory()
    base = (1_780_000_000_000 // WINDOW_MS) * WINDOW_MS  # 2026-05-28, in the validity period
    runs: dict[bool, QuietRun] = {}
    for crash in (False, True):
        contract = contract_factory("micromobility", partitions=PARTITIONS, edit=_short_windows)
        worker = worker_factory([contract], f"empty-{crash}")
        runs[crash] = QuietRun(contract, producer, worker, kafka_bootstrap, base)
        runs[crash].start()
    runs[True].crash()
    firsts = {crash: run.published() for crash, run in runs.items()}
    for run in runs.values():
        run.later_heartbeat()
    seconds = {crash: run.published() for crash, run in runs.items()}
    for run in runs.values():
        assert run.worker.terminate() == 0, run.worker.log_tail()
    contracts = {crash: run.contract for crash, run in runs.items()}
    straight, straight_later = firsts[False], seconds[False]
    crashed, crashed_later = firsts[True], seconds[True]
    windows = {(base + w * WINDOW_MS, base + (w + 1) * WINDOW_MS): w for w in range(14)}
    assert set(straight.windows) == set(windows)
    for window, w in windows.items():
        rows, report = straight.windows[window]
        if w in DATA_WINDOWS:
            assert rows and report[1] == 1, (w, report)  # one group of three vehicles
        else:
            assert (rows, report) == ([], EMPTY_REPORT), (w, report)
    # The crashed run published the same windows, each once, as the run without a crash.
    assert crashed.windows == straight.windows
    assert crashed_later.windows == straight_later.windows
    assert len(straight_later.windows) == len(windows) + 3
    for view in (straight, crashed, straight_later, crashed_later):
        assert view.duplicates == 0
    # The audit, from the raw topic's events and heartbeats alone, expects exactly these.
    for contract in contracts.values():
        report = audit(contract, kafka_bootstrap, audience="confidential")
        violations = [f for f in report["findings"] if f["severity"] == "violation"]
        assert violations == []
        (row,) = [v for v in report["reconciliation"]["views"] if v["view"] == VIEW]
        assert row["windows"]["released"] == len(windows) + 3 and row["gap"] == 0
        assert row["empty_windows"] == {"released": len(windows) + 3 - len(DATA_WINDOWS), "open": 0}
