"""Crash and rebalance on the real broker: results equal the oracle, no duplicate, none missing.

Template: Kafka's ``TransactionsTest`` (research/reliability.md §1.3): copiers are hard-bounced
three times, each after at least 20 % progress, while a ``read_committed`` consumer checks the
output. Here two ``respublica worker`` processes share the work and one is SIGKILLed three
times; in the other test workers go 1 → 2 → 1. Input arrives chunk by chunk, paced on the
published output (a condition, not a timer), so the kills land mid-stream.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import Any

import pytest
from kafka import KafkaProducer

from contracts.model import Contract
from tests.worker.support import (
    WorkerProcess,
    dumps,
    encode_raw,
    expected_windows,
    metric_value,
    mobility_events,
    produce_end_of_stream,
    produce_raw,
    read_public,
    wait_for,
)

pytestmark = pytest.mark.integration

VEHICLE_EVENTS = 24_000
CHUNKS = 10
VIEWS = ("availability", "origin_destination")


class PacedRun:
    """Feeds a contract's raw topics chunk by chunk and watches the public topics."""

    def __init__(
        self,
        bootstrap: str,
        producer: KafkaProducer,
        contract: Contract,
        events: dict[str, list[dict[str, Any]]],
    ) -> None:
        self.bootstrap = bootstrap
        self.producer = producer
        self.contract = contract
        self.expected = {v: expected_windows(contract, events, v) for v in VIEWS}
        self.chunks = [
            {
                s: encode_raw(
                    contract,
                    s,
                    records[i * len(records) // CHUNKS : (i + 1) * len(records) // CHUNKS],
                )
                for s, records in events.items()
            }
            for i in range(CHUNKS)
        ]

    def progress(self) -> float:
        """Share of the availability windows published so far (read_committed)."""
        got = read_public(self.bootstrap, self.contract, "availability")
        return len(got.windows) / len(self.expected["availability"])

    def produce(self, index: int, workers: list[WorkerProcess]) -> None:
        """Produce chunk ``index`` once the output caught up with chunk ``index - 2``."""
        target = max(0.0, (index - 2) / CHUNKS * 0.9)

        def caught_up() -> bool:
            for worker in workers:
                assert worker.alive(), worker.log_tail()
            return self.progress() >= target

        wait_for(caught_up, 120, f"output to reach {target:.0%} before chunk {index}")
        for stream, accepted in self.chunks[index].items():
            produce_raw(self.producer, self.contract.topic_raw(stream), accepted)

    def finish(self, workers: list[WorkerProcess]) -> None:
        """End every partition and wait for every window of every view."""
        for stream in self.contract.streams:
            produce_end_of_stream(self.producer, self.contract.topic_raw(stream), stream.partitions)

        def complete() -> bool:
            for worker in workers:
                assert worker.alive(), worker.log_tail()
            return all(
                len(read_public(self.bootstrap, self.contract, v).windows) >= len(w)
                for v, w in self.expected.items()
            )

        wait_for(complete, 300, "every window of both views", every_s=1.0)

    def check(self) -> None:
        """Equal to the oracle, release for release; no record published twice."""
        for view, windows in self.expected.items():
            got = read_public(self.bootstrap, self.contract, view)
            assert got.duplicates == 0, f"{view}: {got.duplicates} duplicate record(s)"
            missing = set(windows) - set(got.windows)
            assert not missing, f"{view}: {len(missing)} window(s) missing"
            assert got.windows == windows, f"{view}: {dumps(got.windows)} != {dumps(windows)}"


def start_healthy(*workers: WorkerProcess) -> None:
    """Start the workers together, then wait until every one is healthy."""
    for worker in workers:
        worker.start()

    def healthy() -> bool:
        for worker in workers:
            assert worker.alive(), worker.log_tail()
        return all(worker.healthy() for worker in workers)

    names = " and ".join(worker.worker_id for worker in workers)
    wait_for(healthy, 90, f"{names} to be healthy")


def test_sigkill_three_times_changes_nothing(
    contract_factory: Callable[..., Contract],
    worker_factory: Callable[..., WorkerProcess],
    producer_factory: Callable[..., KafkaProducer],
    kafka_bootstrap: str,
) -> None:
    contract = contract_factory("micromobility")
    run = PacedRun(
        kafka_bootstrap,
        producer_factory(linger_ms=20),
        contract,
        mobility_events(VEHICLE_EVENTS, seed=11),
    )
    victim = worker_factory([contract], "victim")
    survivor = worker_factory([contract], "survivor")
    start_healthy(victim, survivor)
    rng = random.Random(5)
    kill_at = [rng.uniform(0.2, 0.3), rng.uniform(0.4, 0.5), rng.uniform(0.6, 0.7)]
    owned: list[tuple[float, float]] = []  # (raw partitions, views) held at each kill
    for index in range(CHUNKS):
        run.produce(index, [victim, survivor])
        while kill_at and run.progress() >= kill_at[0]:
            text = victim.metrics() if victim.healthy() else ""
            owned.append(
                (
                    metric_value(text, "respublica_worker_assignment", stage="raw"),
                    metric_value(text, "respublica_worker_assignment", stage="merge"),
                )
            )
            victim.kill()  # SIGKILL: no checkpoint, no commit, transaction left open
            kill_at.pop(0)
            victim.start()
    run.finish([victim, survivor])
    assert len(owned) == 3, "the run ended before every kill"
    # Round-robin assignment: the victim holds raw partitions and one of the two views.
    assert any(raw > 0 and views > 0 for raw, views in owned), owned
    run.check()
    assert survivor.terminate() == 0, survivor.log_tail()
    wait_for(victim.healthy, 90, "the restarted victim to be healthy")  # then a graceful stop
    assert victim.terminate() == 0, victim.log_tail()


def test_rebalance_one_two_one_changes_nothing(
    contract_factory: Callable[..., Contract],
    worker_factory: Callable[..., WorkerProcess],
    producer_factory: Callable[..., KafkaProducer],
    kafka_bootstrap: str,
) -> None:
    contract = contract_factory("micromobility")
    run = PacedRun(
        kafka_bootstrap,
        producer_factory(linger_ms=20),
        contract,
        mobility_events(VEHICLE_EVENTS, seed=13),
    )
    first = worker_factory([contract], "first")
    second = worker_factory([contract], "second")
    start_healthy(first)
    running = [first]
    for index in range(CHUNKS):
        run.produce(index, running)
        if index == 3:
            start_healthy(second)  # 1 → 2: partitions and views are spread over both
            running.append(second)
        if index == 6:
            assert second.terminate() == 0, second.log_tail()  # 2 → 1, gracefully
            running.remove(second)
    run.finish([first])
    run.check()
    assert first.terminate() == 0, first.log_tail()
