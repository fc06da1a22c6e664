"""Bench input: simulated events for a contract, Avro-encoded once, preloaded into Kafka.

The contract is any copy of a bundled example (``--contract FILE``; default the micromobility
example): streams with the schemas of an example, so that one of the simulators
(``connectors.simulate``) writes their events, placed in the copy's territory
(``connectors.simulate.place``). Each round works on a copy of it under a unique id (a run
never meets another run's topics, and the worker of one round never restores another's
state), with the raw topics' partition count set by ``--partitions``. Each raw partition ends
with the documented end-of-stream control record, so the worker can release every window.
"""

from __future__ import annotations

import asyncio
import copy
import uuid
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml

from broker.kafka import topics
from broker.kafka.clients import end_of_stream
from broker.kafka.serde import encode, schema_id
from broker.kafka.writer import KafkaBatchWriter, OutRecord, ProducerSettings
from broker.processes import BenchError
from connectors.simulate import SIMULATORS
from connectors.simulate.base import SimOptions, SimRecord
from connectors.simulate.place import BoxMap, relocated
from contracts import examples_dir, load_contracts
from contracts.copies import absolute_references, write_contract
from contracts.geometry import Region
from contracts.model import Contract
from policies.pseudonymise import canonical_id

DEFAULT_EXAMPLE = "micromobility.yaml"
SEED = 20261126
WRITE_CHUNK = 20_000


@dataclass(frozen=True)
class BenchSource:
    """What every round shares: the contract to copy and the events simulated for it."""

    data: dict[str, Any]  # the contract file's content, references made absolute
    contract: Contract  # as loaded from its own file
    simulator: str  # the name in connectors.simulate.SIMULATORS
    main_stream: str  # what --events counts, and what B1/B2 read
    events: dict[str, list[dict[str, Any]]]
    example: Contract  # the bundled example whose streams it shares

    def is_example_view(self, view: str) -> bool:
        """Whether ``view`` is defined exactly as in the example (F implements only the
        micromobility example's availability view)."""
        mine = {v.name: v for v in self.contract.views}.get(view)
        theirs = {v.name: v for v in self.example.views}.get(view)
        return mine is not None and mine == theirs


@dataclass(frozen=True)
class BenchInput:
    """The preloaded events and where they are."""

    contract: Contract
    contract_file: Path
    events: dict[str, list[dict[str, Any]]]
    partitions: int
    main_stream: str

    @property
    def main_events(self) -> int:
        """Events of the stream the baselines read."""
        return len(self.events[self.main_stream])

    @property
    def total(self) -> int:
        """Events on the streams the worker reads (those with a view)."""
        return sum(
            len(rows)
            for name, rows in self.events.items()
            if self.contract.views_of(self.contract.stream(name))
        )


def load_source(path: Path | None, main_events: int, *, allow_outside: bool = False) -> BenchSource:
    """The contract at ``path`` (default: the micromobility example) and ``main_events``
    events of its first simulated stream, with the other streams' events simulated meanwhile."""
    path = path or examples_dir() / DEFAULT_EXAMPLE
    [contract] = load_contracts([path], now=datetime.now(UTC), allow_outside=allow_outside)
    data = absolute_references(yaml.safe_load(path.read_text(encoding="utf-8")), path.parent)
    examples = {c.id: c for c in load_contracts([examples_dir()], now=datetime.now(UTC))}
    name, example, streams = _simulator_for(contract, examples)
    events = _simulate(name, contract, example, streams, main_events)
    return BenchSource(data, contract, name, streams[0], events, example)


def _simulator_for(
    contract: Contract, examples: dict[str, Contract]
) -> tuple[str, Contract, list[str]]:
    """The simulator writing most of the contract's streams (same names, same fields)."""
    best: tuple[str, Contract, list[str]] | None = None
    for name, simulator in SIMULATORS.items():
        example = examples[simulator.contract_id]
        shared = [
            s
            for s in simulator.streams
            if s in {c.name for c in contract.streams}
            and contract.stream(s).fields == example.stream(s).fields
            and contract.views_of(contract.stream(s))
        ]
        if shared and (best is None or len(shared) > len(best[2])):
            best = (name, example, shared)
    if best is None:
        msg = (
            f"contract {contract.id}: no stream with views has the name and schema of a "
            f"simulated example stream; the bench simulates the examples' streams "
            f"({', '.join(s for sim in SIMULATORS.values() for s in sim.streams)})"
        )
        raise BenchError(msg)
    return best


def _simulate(
    name: str, contract: Contract, example: Contract, streams: list[str], main_events: int
) -> dict[str, list[dict[str, Any]]]:
    simulator = SIMULATORS[name](SimOptions(seed=SEED))
    events: dict[str, list[dict[str, Any]]] = {s: [] for s in streams}
    boxes = [Region.of(c.territory.polygons).bbox for c in (example, contract)]
    records: Iterator[SimRecord] = iter(simulator.records())
    if boxes[0] != boxes[1]:
        records = relocated(records, BoxMap(*boxes), simulator.position_fields)
    for sim in records:
        if sim.stream == streams[0] and len(events[streams[0]]) >= main_events:
            break
        if sim.stream in events:
            events[sim.stream].append(sim.record)
    return events


def bench_contract(source: BenchSource, workdir: Path, partitions: int) -> tuple[Contract, Path]:
    """A copy of the source contract under a unique id, its streams with ``partitions``."""
    data = copy.deepcopy(source.data)
    data["id"] = f"bench-{uuid.uuid4().hex[:8]}"
    for stream in data["streams"]:
        stream["partitions"] = partitions
    path = write_contract(data, workdir)
    contract = load_contracts([path], now=datetime.now(UTC))[0]
    return contract, path


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


def preload(bootstrap: str, workdir: Path, source: BenchSource, partitions: int) -> BenchInput:
    """Create a fresh copy's topics and write the events, then end-of-stream marks."""
    contract, path = bench_contract(source, workdir, partitions)
    with topics.TopicAdmin(bootstrap) as admin:
        topics.apply(admin, topics.plan(admin, [contract]))
    records = [r for name, rows in source.events.items() for r in _encoded(contract, name, rows)]
    asyncio.run(_write(bootstrap, records))
    end_of_stream(bootstrap, contract)
    return BenchInput(contract, path, source.events, partitions, source.main_stream)
