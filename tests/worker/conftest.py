"""Fixtures of the worker tests: isolated contracts with their topics, worker subprocesses."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from kafka import KafkaAdminClient

from broker.kafka.local import free_port
from broker.kafka.settings import KafkaSettings
from broker.worker.engine import Engine, WorkerConfig
from broker.worker.keyrecords import MasterKeys
from broker.worker.merge import DEFAULT_STATE_INTERVAL_S
from broker.worker.metrics import WorkerMetrics
from contracts.model import Contract
from tests.worker.support import (
    MASTER_KEY,
    WorkerProcess,
    create_topics,
    delete_topics,
    unique_contract,
)


@pytest.fixture
def contract_factory(
    kafka_bootstrap: str, kafka_admin: KafkaAdminClient, tmp_path: Path
) -> Iterator[Callable[..., Contract]]:
    """Example contracts under fresh ids, with their topics applied; topics deleted after."""
    created: list[str] = []

    def make(example: str, **options: Any) -> Contract:
        contract = unique_contract(tmp_path, example, **options)
        created.extend(create_topics(kafka_bootstrap, contract))
        return contract

    yield make
    delete_topics(kafka_admin, created)


@pytest.fixture
def worker_factory(kafka_bootstrap: str, tmp_path: Path) -> Iterator[Callable[..., WorkerProcess]]:
    """``respublica worker`` subprocesses sharing one consumer-group prefix; all stopped after."""
    group = f"test-{uuid.uuid4().hex[:8]}"
    started: list[WorkerProcess] = []

    def make(contracts: list[Contract], name: str, extra: list[str] | None = None) -> WorkerProcess:
        files = [c.source for c in contracts if c.source is not None]
        worker = WorkerProcess(kafka_bootstrap, files, name, group, tmp_path, free_port(), extra)
        started.append(worker)
        return worker

    yield make
    for worker in started:
        worker.terminate(timeout_s=30)


@pytest.fixture
def engine_factory(kafka_bootstrap: str) -> Iterator[Callable[..., Engine]]:
    """In-process engines in one fresh group (``Engine`` options: faults for the tests)."""
    group = f"test-{uuid.uuid4().hex[:8]}"
    engines: list[Engine] = []

    def make(
        contract: Contract, state_interval_s: float = DEFAULT_STATE_INTERVAL_S, **options: Any
    ) -> Engine:
        config = WorkerConfig(
            kafka_settings=KafkaSettings.load(bootstrap=kafka_bootstrap),
            worker_id=f"w{len(engines)}",
            group=group,
            web_port=None,
            checkpoint_interval_s=0.3,
            state_interval_s=state_interval_s,
        )
        engine = Engine(
            config, [contract], MasterKeys(bytes.fromhex(MASTER_KEY)), WorkerMetrics(), **options
        )
        engines.append(engine)
        engine.start()
        return engine

    yield make
    for engine in engines:
        engine.stop()
