"""Fixtures of the worker tests: isolated contracts with their topics, worker subprocesses."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from kafka import KafkaAdminClient

from broker.kafka.local import free_port
from contracts.model import Contract
from tests.worker.support import WorkerProcess, create_topics, delete_topics, unique_contract


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
