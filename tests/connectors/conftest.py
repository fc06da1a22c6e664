"""Fixtures for connector tests: contracts under a fixed clock, good events, validators.

Unit tests validate against the bundled examples at ``NOW``; integration tests get a copy of
``micromobility.yaml`` under a unique id (so its topics never clash) from ``contract_copy``.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from kafka import KafkaAdminClient

from broker.kafka import topics
from broker.kafka.serde import Schemas
from connectors.validate import StreamValidator
from contracts import Contract, examples_dir, load_contracts
from contracts.copies import example_data, write_contract

NOW = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)
NOW_MS = int(NOW.timestamp() * 1000)
# Inside the Lyon micromobility territory (bbox [4.77, 45.70, 4.92, 45.81]).
LYON = (45.7578, 4.8320)

EventFactory = Callable[..., dict[str, Any]]
ContractCopy = Callable[..., Contract]


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "bench: throughput measurement, run with RESPUBLICA_BENCH=1")


def vehicle_event(i: int = 0, *, now_ms: int = NOW_MS, **overrides: Any) -> dict[str, Any]:
    """A valid ``vehicle_events`` record of the micromobility example, number ``i``."""
    record: dict[str, Any] = {
        "event_id": f"evt-{i:08d}",
        "vehicle_id": f"veh-{i % 500:05d}",
        "provider_id": "9e2f1c7a-provider",
        "vehicle_type": "scooter_standing",
        "propulsion": "electric",
        "event_type": "available",
        "timestamp": now_ms - 1_000 - (i % 60_000),
        "lat": LYON[0] + (i % 100) * 1e-4,
        "lon": LYON[1] + (i % 100) * 1e-4,
        "battery_pct": 80,
        "trip_id": None,
    }
    record.update(overrides)
    return record


@pytest.fixture(scope="session")
def examples() -> dict[str, Contract]:
    """The bundled example contracts, by id, loaded at ``NOW``."""
    return {c.id: c for c in load_contracts([examples_dir()], now=NOW)}


@pytest.fixture(scope="session")
def mobility(examples: dict[str, Contract]) -> Contract:
    return examples["lyon-micromobility"]


@pytest.fixture(scope="session")
def schemas(examples: dict[str, Contract]) -> Schemas:
    return Schemas.from_contracts(examples.values())


@pytest.fixture
def vehicle_validator(mobility: Contract, schemas: Schemas) -> StreamValidator:
    """A fresh validator (empty duplicate filter) for ``vehicle_events``."""
    return StreamValidator(mobility, "vehicle_events", schemas=schemas)


def contract_data(name: str = "micromobility.yaml") -> dict[str, Any]:
    """An example contract as a dict, with schema and zone paths made absolute."""
    return example_data(name)


@pytest.fixture
def contract_copy(tmp_path: Path) -> ContractCopy:
    """``contract_copy(**top_level_overrides)`` -> micromobility under a unique id."""

    def make(**overrides: Any) -> Contract:
        data = contract_data()
        data["id"] = f"t{uuid.uuid4().hex[:10]}"
        data.update(overrides)
        return load_contracts([write_contract(data, tmp_path)], now=NOW)[0]

    return make


@pytest.fixture
def applied(
    kafka_bootstrap: str, kafka_admin: KafkaAdminClient, contract_copy: ContractCopy
) -> Iterator[Contract]:
    """A micromobility copy whose topics exist on the broker; they are deleted afterwards."""
    contract = contract_copy()
    with topics.TopicAdmin(kafka_bootstrap) as admin:
        topics.apply(admin, topics.plan(admin, [contract]))
    yield contract
    names = {spec.name for spec in topics.contract_topics(contract)}
    kafka_admin.delete_topics(sorted(names & set(kafka_admin.list_topics())))
