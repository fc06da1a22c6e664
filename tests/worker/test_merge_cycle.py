"""The merge loop's start-up and its cycle, with an in-process ``Engine`` on the real broker.

The release delay (``docs/benchmarks.md``, issue 17 session 4) came from two places: the raw
loop folding a backlog while the merge loop was still fencing its views, and the views'
transactions committed one after the other. These tests hold the two changes to what they
must keep: the first fold waits for the merger, and transactions committed together are each
still exactly once, through a crash in the middle of such a cycle.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from typing import Any

import pytest
from kafka import KafkaProducer, TopicPartition

from broker.deadline import DeadlineExceeded
from broker.worker import mergeloop
from broker.worker.engine import Engine
from broker.worker.merge import MergeOutput
from contracts.model import Contract
from tests.worker.support import (
    encode_raw,
    expected_windows,
    feed,
    mobility_events,
    produce_end_of_stream,
    produce_raw,
    read_public,
    wait_for,
)

pytestmark = pytest.mark.integration
VIEWS = ("availability", "origin_destination")


class SimulatedCrash(Exception):
    """Raised while another view's commit of the same cycle is in flight."""


def _all_released(
    engine: Engine, bootstrap: str, contract: Contract, expected: dict[str, Any]
) -> Callable[[], bool]:
    def check() -> bool:
        assert engine.failure() is None, engine.failure()
        return all(
            len(read_public(bootstrap, contract, view).windows) >= len(expected[view])
            for view in VIEWS
        )

    return check


def test_the_raw_loop_folds_a_backlog_only_once_the_merger_owns_its_views(
    contract_factory: Callable[..., Contract],
    engine_factory: Callable[..., Engine],
    producer_factory: Callable[..., KafkaProducer],
    kafka_bootstrap: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    contract = contract_factory("micromobility", partitions=2)
    events = mobility_events(3_000, seed=5)
    expected = {view: expected_windows(contract, events, view) for view in VIEWS}
    feed(producer_factory(), contract, events)  # a backlog, there before the worker starts
    adopt = mergeloop.MergeLoop.adopt

    def slow_adopt(self: mergeloop.MergeLoop, tps: list[TopicPartition]) -> None:
        time.sleep(3)  # a merger slow to fence (a loaded machine); not a synchronisation
        adopt(self, tps)

    monkeypatch.setattr(mergeloop.MergeLoop, "adopt", slow_adopt)
    engine = engine_factory(contract)
    wait_for(_all_released(engine, kafka_bootstrap, contract, expected), 90, "every window")

    raw, merge = engine.raw_loops[0], engine.merge_loops[0]
    assert merge.settled_at is not None and raw.first_fold_at is not None
    assert raw.first_fold_at >= merge.settled_at, "the raw loop folded before the merger owned"
    for view in VIEWS:
        got = read_public(kafka_bootstrap, contract, view)
        assert got.windows == expected[view] and got.duplicates == 0, view


def test_views_committed_in_one_cycle_are_each_released_exactly_once_through_a_crash(
    contract_factory: Callable[..., Contract],
    engine_factory: Callable[..., Engine],
    producer_factory: Callable[..., KafkaProducer],
    kafka_bootstrap: str,
) -> None:
    contract = contract_factory("micromobility", partitions=2)
    events = mobility_events(6_000, seed=11)
    expected = {view: expected_windows(contract, events, view) for view in VIEWS}
    first: list[Engine] = []
    crashed: list[tuple[str, list[str]]] = []

    def crash_in_a_joint_cycle(topic: str, output: MergeOutput) -> None:
        # Called after this view's records are flushed, before its commit begins: crash
        # while an earlier view of the same cycle is committing, releases at stake.
        in_flight = first[0].merge_loops[0].committing
        at_stake = output.releases or any(o.releases for o, _ in in_flight.values())
        if in_flight and at_stake and not crashed:
            crashed.append((topic, sorted(in_flight)))
            raise SimulatedCrash

    # A state snapshot in every step that read partials: both views commit in most cycles.
    # The events go in slices, so that the merge loop steps many times (a single batch can
    # be folded and merged in one or two steps, none of them joint).
    first.append(engine_factory(contract, state_interval_s=0.0, merge_fault=crash_in_a_joint_cycle))
    producer = producer_factory()
    encoded = {stream: encode_raw(contract, stream, records) for stream, records in events.items()}
    slices = 12
    for i in range(slices):
        for stream, accepted in encoded.items():
            part = accepted[i * len(accepted) // slices : (i + 1) * len(accepted) // slices]
            produce_raw(producer, contract.topic_raw(stream), part)
        producer.flush()
        if not crashed:
            with contextlib.suppress(DeadlineExceeded):
                wait_for(lambda: first[0].failure() is not None, 3, "a crash")
    for stream in encoded:
        produce_end_of_stream(
            producer, contract.topic_raw(stream), contract.stream(stream).partitions
        )
    producer.flush()
    wait_for(lambda: first[0].failure() is not None, 90, "the crash in a joint cycle")
    assert isinstance(first[0].failure(), SimulatedCrash)
    ((crashed_view, committing),) = crashed
    assert committing and crashed_view not in committing  # two views in one cycle
    first[0].stop()  # the crashed view's transaction stays open: the next owner aborts it

    second = engine_factory(contract)
    wait_for(_all_released(second, kafka_bootstrap, contract, expected), 90, "every window")
    for view in VIEWS:
        got = read_public(kafka_bootstrap, contract, view)
        assert got.windows == expected[view], view
        assert got.duplicates == 0, f"{view}: a window released twice"
