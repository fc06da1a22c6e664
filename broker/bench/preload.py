"""Bench input: simulated micromobility events, Avro-encoded once, preloaded into Kafka.

The contract is a copy of the bundled micromobility example under a unique id (a run never
meets another run's topics, and the worker of one round never restores another's state), with
the raw topics' partition count set by ``--partitions``. Each raw partition ends with the
documented end-of-stream control record, so the worker can release every window.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from broker.kafka import topics
from broker.kafka.clients import end_of_stream
from broker.kafka.serde import encode, schema_id
from broker.kafka.writer import KafkaBatchWriter, OutRecord, ProducerSettings
from connectors.simulate.base import SimOptions
from connectors.simulate.mobility import MobilitySimulator
from contracts import load_contracts
from contracts.copies import example_data, write_contract
from contracts.model import Contract
from policies.pseudonymise import canonical_id

EVENTS_STREAM = "vehicle_events"
TRIPS_STREAM = "trips"
SEED = 20261126
WRITE_CHUNK = 20_000


@dataclass(frozen=True)
class BenchInput:
    """The preloaded events and where they are."""

    contract: Contract
    contract_file: Path
    events: dict[str, list[dict[str, Any]]]
    partitions: int

    @property
    def vehicle_events(self) -> int:
        return len(self.events[EVENTS_STREAM])

    @property
    def total(self) -> int:
        return sum(len(records) for records in self.events.values())


def bench_contract(workdir: Path, partitions: int) -> tuple[Contract, Path]:
    """The micromobility example under a unique id, its streams with ``partitions``."""
    data = example_data("micromobility")
    data["id"] = f"bench-{uuid.uuid4().hex[:8]}"
    for stream in data["streams"]:
        stream["partitions"] = partitions
    path = write_contract(data, workdir)
    contract = load_contracts([path], now=datetime.now(UTC))[0]
    return contract, path


def simulate(vehicle_events: int) -> dict[str, list[dict[str, Any]]]:
    """``vehicle_events`` vehicle events and the trips simulated alongside them."""
    events: dict[str, list[dict[str, Any]]] = {EVENTS_STREAM: [], TRIPS_STREAM: []}
    for sim in MobilitySimulator(SimOptions(seed=SEED)).records():
        if sim.stream == EVENTS_STREAM and len(events[EVENTS_STREAM]) >= vehicle_events:
            break
        events[sim.stream].append(sim.record)
    return events


def _encoded(
    contract: Contract, stream_name: str, records: Iterable[dict[str, Any]]
) -> list[OutRecord]:
    stream = contract.stream(stream_name)
    sid, topic = schema_id(stream.raw_schema), contract.topic_raw(stream)
    return [
        OutRecord(
            topic, canonical_id(r[stream.subject]).encode(), encode(stream.avro_schema, sid, r), []
        )
        for r in records
    ]


async def _write(bootstrap: str, records: list[OutRecord]) -> None:
    writer = KafkaBatchWriter(ProducerSettings(bootstrap, role="bench"))
    await writer.start()
    try:
        for start in range(0, len(records), WRITE_CHUNK):
            await writer.write(records[start : start + WRITE_CHUNK])
    finally:
        await writer.close()


def preload(
    bootstrap: str,
    workdir: Path,
    vehicle_events: int,
    partitions: int,
    *,
    events: dict[str, list[dict[str, Any]]] | None = None,
) -> BenchInput:
    """Create a fresh contract's topics and write the events, then end-of-stream marks."""
    contract, path = bench_contract(workdir, partitions)
    with topics.TopicAdmin(bootstrap) as admin:
        topics.apply(admin, topics.plan(admin, [contract]))
    events = events or simulate(vehicle_events)
    records = [r for name, rows in events.items() for r in _encoded(contract, name, rows)]
    asyncio.run(_write(bootstrap, records))
    end_of_stream(bootstrap, contract)
    return BenchInput(contract, path, events, partitions)
