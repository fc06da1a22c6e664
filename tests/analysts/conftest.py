"""Fixtures of the analyst tests: one small real release of two contracts, shared by all.

A worker subprocess turns simulated events into public records once for this package; the
tests then read, tail, export and decode them. Topics and the worker go at the end.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from kafka import KafkaAdminClient, KafkaProducer

from broker.kafka.local import free_port
from broker.kafka.settings import as_settings
from broker.kafka.writer import OutRecord
from contracts.model import Contract
from tests.worker.support import (
    WorkerProcess,
    create_topics,
    delete_topics,
    expected_windows,
    feed,
    mobility_events,
    read_public,
    rental_events,
    unique_contract,
    wait_for,
)

MOBILITY_EVENTS = 3000
RENTAL_EVENTS = 1000
VIEWS = (
    ("mobility", "availability"),
    ("mobility", "origin_destination"),
    ("rentals", "nights_by_district"),
    ("rentals", "nights_by_cell"),
)


class NullWriter:
    """A gateway writer that is never asked to write in these tests."""

    connected = True

    async def write(self, records: Sequence[OutRecord]) -> None:
        raise AssertionError("no events are posted here")

    async def close(self) -> None:
        pass


@dataclass
class Published:
    """Two contracts whose views a worker has released, and the raw events behind them."""

    bootstrap: str
    mobility: Contract
    rentals: Contract
    events: dict[str, dict[str, list[dict[str, Any]]]]
    expected: dict[tuple[str, str], Any]
    contract_dir: Path

    def contract(self, name: str) -> Contract:
        return self.mobility if name == "mobility" else self.rentals

    def raw_subjects(self) -> set[str]:
        """Every raw subject id (vehicle ids, registration numbers) of the input."""
        out: set[str] = set()
        for contract, streams in (
            (self.mobility, self.events["mobility"]),
            (self.rentals, self.events["rentals"]),
        ):
            for stream, records in streams.items():
                subject = contract.stream(stream).subject
                out |= {str(r[subject]) for r in records}
        return out


def own_consumers(data: dict[str, Any]) -> None:
    """Consumer principals of this contract only (``User:<contract id>-<n>``): the tests
    create them as SCRAM users, which must not meet another test's."""
    for n, consumer in enumerate(data.get("consumers", [])):
        consumer["principal"] = f"User:{data['id']}-{n}"


@pytest.fixture(scope="package")
def published(
    kafka_bootstrap: str, kafka_admin: KafkaAdminClient, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Published]:
    tmp = tmp_path_factory.mktemp("analysts")
    mobility = unique_contract(tmp, "micromobility", edit=own_consumers)
    rentals = unique_contract(tmp, "rentals", edit=own_consumers)
    topic_names = create_topics(kafka_bootstrap, mobility) + create_topics(kafka_bootstrap, rentals)
    events = {"mobility": mobility_events(MOBILITY_EVENTS), "rentals": rental_events(RENTAL_EVENTS)}
    contracts = {"mobility": mobility, "rentals": rentals}
    expected = {(c, v): expected_windows(contracts[c], events[c], v) for c, v in VIEWS}
    producer = KafkaProducer(
        **as_settings(kafka_bootstrap).kafka_python("tests"),
        acks="all",
        enable_idempotence=True,
        linger_ms=20,
    )
    worker = WorkerProcess(
        kafka_bootstrap,
        [mobility.source, rentals.source],  # type: ignore[list-item]
        "analysts-1",
        f"test-{uuid.uuid4().hex[:8]}",
        tmp,
        free_port(),
    )
    try:
        feed(producer, mobility, events["mobility"])
        feed(producer, rentals, events["rentals"])
        worker.start()

        def done() -> bool:
            assert worker.alive(), worker.log_tail()
            return all(
                len(read_public(kafka_bootstrap, contracts[c], v).windows) >= len(w)
                for (c, v), w in expected.items()
            )

        wait_for(done, 180, "every window of every view", every_s=1.0)
        yield Published(kafka_bootstrap, mobility, rentals, events, expected, tmp)
    finally:
        worker.terminate(timeout_s=30)
        producer.close(timeout=10)
        delete_topics(kafka_admin, topic_names)
