"""Late events and re-released noise, with an in-process ``Engine`` on the real broker."""

from __future__ import annotations

import uuid
from collections.abc import Callable

import pytest
from kafka import KafkaProducer

from broker.kafka.clients import KafkaKeysLog
from broker.worker.engine import Engine
from broker.worker.keyrecords import MasterKeys
from broker.worker.keystore import KeyStore
from broker.worker.merge import MergeOutput
from connectors.simulate.base import SimOptions, take
from connectors.simulate.navigation import NavigationSimulator
from contracts.model import Contract
from tests.worker.support import (
    MASTER_KEY,
    encode_raw,
    events_of,
    expected_windows,
    feed,
    metric_value,
    mobility_events,
    produce_end_of_stream,
    produce_raw,
    read_public,
    wait_for,
)

pytestmark = pytest.mark.integration
KEK = MasterKeys(bytes.fromhex(MASTER_KEY))


class SimulatedCrash(Exception):
    """Raised between sending a window's records and committing their transaction."""


def test_late_event_is_counted_and_never_changes_a_release(
    contract_factory: Callable[..., Contract],
    engine_factory: Callable[..., Engine],
    producer_factory: Callable[..., KafkaProducer],
    kafka_bootstrap: str,
) -> None:
    contract = contract_factory("micromobility", partitions=1)
    events = mobility_events(4_000, seed=21)
    expected = expected_windows(contract, events, "availability")
    first = min(expected)
    producer = producer_factory()
    topic = contract.topic_raw("vehicle_events")
    produce_raw(producer, topic, encode_raw(contract, "vehicle_events", events["vehicle_events"]))
    engine = engine_factory(contract)

    def published(window: tuple[int, int]) -> Callable[[], bool]:
        def check() -> bool:
            assert engine.failure() is None, engine.failure()
            return window in read_public(kafka_bootstrap, contract, "availability").windows

        return check

    wait_for(published(first), 60, "the first window")
    before = read_public(kafka_bootstrap, contract, "availability")
    # A vehicle nobody saw, becoming available inside the released window: late.
    template = next(
        e
        for e in events["vehicle_events"]
        if e["event_type"] == "available" and first[0] <= e["timestamp"] < first[1]
    )
    late = {**template, "event_id": str(uuid.uuid4()), "vehicle_id": str(uuid.uuid4())}
    produce_raw(producer, topic, encode_raw(contract, "vehicle_events", [late]))
    produce_end_of_stream(producer, topic, 1)
    wait_for(published(max(expected)), 60, "the last window")

    after = read_public(kafka_bootstrap, contract, "availability")
    assert after.windows == expected  # the oracle never saw the late event
    assert after.duplicates == 0
    first_keys = [k for k in after.keys if k in set(before.keys)]
    assert len(first_keys) == len(before.keys), "a released window was published again"
    text = engine.metrics.exposition().decode()
    assert (
        metric_value(text, "respublica_view_events_total", view="availability", disposition="late")
        == 1
    )


def test_a_window_released_again_after_a_crash_has_the_same_noise(
    contract_factory: Callable[..., Contract],
    engine_factory: Callable[..., Engine],
    producer_factory: Callable[..., KafkaProducer],
    kafka_bootstrap: str,
) -> None:
    contract = contract_factory("navigation")
    sim = list(take(NavigationSimulator(SimOptions(seed=4)).records(), 6_000))
    events = {s: events_of(sim, s) for s in ("jams", "alerts")}
    crashed: list[int] = []

    def crash_once(topic: str, output: MergeOutput) -> None:
        if topic.endswith(".alerts_by_type") and output.published and not crashed:
            crashed.append(output.published)
            raise SimulatedCrash

    first = engine_factory(contract, merge_fault=crash_once)
    feed(producer_factory(), contract, events)
    wait_for(lambda: first.failure() is not None, 60, "the simulated crash")
    assert isinstance(first.failure(), SimulatedCrash)
    first.stop()  # the other loop stops gracefully; the transaction stays open

    second = engine_factory(contract)  # same group: adopts the view, aborts the open txn
    store = KeyStore(
        contract.id,
        KafkaKeysLog(second.config.kafka, f"respublica.{contract.id}.keys"),
        KEK,
        "test",
    )
    expected = expected_windows(contract, events, "alerts_by_type", store.noise_key())
    wait_for(
        lambda: (
            len(read_public(kafka_bootstrap, contract, "alerts_by_type").windows) >= len(expected)
        ),
        90,
        "every window after the restart",
    )

    committed = read_public(kafka_bootstrap, contract, "alerts_by_type")
    assert committed.windows == expected and committed.duplicates == 0
    everything = read_public(
        kafka_bootstrap, contract, "alerts_by_type", isolation="read_uncommitted"
    )
    assert everything.records >= committed.records + crashed[0]  # the aborted attempt
    values: dict[bytes, set[bytes]] = {}
    for key, value in everything.values:
        values.setdefault(key, set()).add(value)
    assert all(len(v) == 1 for v in values.values()), "a re-release drew new noise"
