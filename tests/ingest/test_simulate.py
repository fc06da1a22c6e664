"""Simulators: deterministic, schema-exact, inside the territory, ordered per subject; faults."""

from __future__ import annotations

from collections import Counter
from datetime import timedelta

import fastavro
import pytest

from connectors.base import Accepted, Rejected
from connectors.simulate import SIMULATORS, SimOptions, simulator, take
from connectors.simulate.faults import AVRO_KINDS, JSON_KINDS, FaultInjector
from connectors.simulate.gbfs import GbfsFeedSimulator
from connectors.territory import TerritoryTest
from connectors.validate import Router
from contracts import Contract

KINDS = sorted(SIMULATORS)


@pytest.mark.parametrize("kind", KINDS)
def test_same_seed_same_events_other_seed_other_events(kind: str) -> None:
    first = list(take(simulator(kind, SimOptions(seed=42)).records(), 2000))
    again = list(take(simulator(kind, SimOptions(seed=42)).records(), 2000))
    other = list(take(simulator(kind, SimOptions(seed=43)).records(), 2000))
    assert first == again
    assert first != other
    sim = simulator(kind, SimOptions(seed=42))
    assert list(take(sim.records(), 50)) == list(take(sim.records(), 50))  # restartable


@pytest.mark.parametrize("kind", KINDS)
def test_records_fit_their_schema_and_territory(kind: str, examples: dict[str, Contract]) -> None:
    sim = simulator(kind, SimOptions(seed=1))
    contract = examples[sim.contract_id]
    territory = TerritoryTest(contract.territory)
    seen: Counter[str] = Counter()
    for stream, record in take(sim.records(), 10_000):
        spec = contract.stream(stream)
        assert list(record) == list(spec.fields)  # exactly the schema's fields, in order
        assert fastavro.validate(record, spec.avro_schema, raise_errors=False)
        if spec.location is not None:
            assert territory.contains(record[spec.location.lon], record[spec.location.lat])
        seen[stream] += 1
    assert set(seen) == set(sim.streams)


@pytest.mark.parametrize("kind", KINDS)
def test_time_order_per_subject_and_bounded_disorder(
    kind: str, examples: dict[str, Contract]
) -> None:
    sim = simulator(kind, SimOptions(seed=2))
    contract = examples[sim.contract_id]
    last: dict[tuple[str, str], int] = {}
    latest = 0
    worst = 0
    for stream, record in take(sim.records(), 10_000):
        spec = contract.stream(stream)
        when, subject = record[spec.event_time], record[spec.subject]
        assert when >= last.get((stream, subject), 0)
        last[(stream, subject)] = when
        worst = max(worst, latest - when)
        latest = max(latest, when)
    lateness = min(s.allowed_lateness for s in contract.streams)
    assert 0 < worst <= lateness / timedelta(milliseconds=1)


@pytest.mark.parametrize("kind", KINDS)
def test_every_good_record_validates_when_the_clock_follows_the_data(
    kind: str, examples: dict[str, Contract]
) -> None:
    sim = simulator(kind, SimOptions(seed=3))
    router = Router(examples.values())
    now = 0
    rejected: Counter[str] = Counter()
    for stream, record in take(sim.records(), 5000):
        now = max(now, record[examples[sim.contract_id].stream(stream).event_time] + 1000)
        outcome = router.validate_json(
            sim.contract_id, stream, record, now_ms=now, connector="sim", source="test"
        )
        if isinstance(outcome, Rejected):
            rejected[outcome.describe()] += 1
    assert rejected == Counter()


@pytest.mark.parametrize("avro", [False, True])
@pytest.mark.parametrize("kind", KINDS)
def test_each_fault_gets_its_reason_and_field(
    kind: str, avro: bool, examples: dict[str, Contract]
) -> None:
    sim = simulator(kind, SimOptions(seed=4))
    contract = examples[sim.contract_id]
    router = Router(examples.values())
    for stream in sim.streams:
        injector = FaultInjector(contract, stream, seed=4, schemas=router.schemas)
        validator = router.validators[(contract.id, stream)]
        records = [r.record for r in take(sim.records(), 1500, [stream])]
        kinds: Counter[str] = Counter()
        now = 0
        for item in injector.mix(records, share=0.3, avro=avro):
            if item.record is not None:
                now = max(now, item.record[validator.stream.event_time] + 1000)
            check = validator.validate_avro if avro else validator.validate_json
            outcome = check(item.payload, now_ms=now, connector="t", source="t")
            if item.fault is None:
                assert isinstance(outcome, Accepted)
                continue
            kinds[item.fault.kind.value] += 1
            assert isinstance(outcome, Rejected)
            assert (outcome.reason, outcome.field_path) == (item.fault.reason, item.fault.field)
        assert set(kinds) == {k.value for k in (AVRO_KINDS if avro else JSON_KINDS)}


def test_gbfs_feed_ids_rotate_after_trips() -> None:
    feed = GbfsFeedSimulator(SimOptions(seed=5, size=40), trip_share=0.3)
    before = feed.vehicle_ids
    for _ in range(5):
        feed.poll()
    assert len(before - feed.vehicle_ids) > 10  # rotated: gone for good
    listed = {b["bike_id"] for b in feed.free_bike_status()["data"]["bikes"]}
    assert listed <= feed.vehicle_ids
