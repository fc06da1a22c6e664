"""The same file pushed through two gateway processes and across a gateway restart: every
copy reaches raw (each gateway's duplicate filter lives in its own memory), and the published
numbers still equal the oracle's on the distinct events."""

from __future__ import annotations

import json
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from kafka import KafkaConsumer, TopicPartition

from broker.ingest.auth import hash_token
from broker.kafka.clients import end_of_stream
from broker.kafka.local import free_port
from broker.kafka.settings import as_settings
from connectors.simulate.base import SimOptions
from connectors.simulate.mobility import MobilitySimulator
from contracts.model import Contract
from tests.worker.support import (
    WorkerProcess,
    dumps,
    expected_windows,
    metric_value,
    read_public,
    wait_for,
)

pytestmark = pytest.mark.integration

TOKEN = "event-once-token"  # noqa: S105 - a test token
EVENTS = 1_500
STREAM = "vehicle_events"


def _long_lateness(data: dict[str, Any]) -> None:
    for stream in data["streams"]:
        stream["allowed_lateness"] = "P1D"  # the file is pushed hours after the fact


def _events(start_ms: int) -> list[dict[str, Any]]:
    out = []
    for item in MobilitySimulator(SimOptions(seed=11, start_ms=start_ms)).records():
        if item.stream == STREAM:
            out.append(item.record)
            if len(out) == EVENTS:
                return out
    raise AssertionError("the simulator is endless")


@contextmanager
def gateway(bootstrap: str, contract: Contract, tokens: Path, log: Path) -> Iterator[str]:
    port = free_port()
    command = [sys.executable, "-m", "broker.cli", "gateway", "--tokens", str(tokens)]
    command += ["--contracts", str(contract.source), "--bootstrap", bootstrap]
    command += ["--port", str(port), "--metrics-port", "0", "--log-level", "warning"]
    command += ["--heartbeat-interval", "0"]  # the test counts raw records
    with log.open("ab") as out:
        process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:

        def healthy() -> bool:
            assert process.poll() is None, log.read_text()[-2000:]
            try:
                with urllib.request.urlopen(f"{url}/healthz", timeout=2) as response:  # noqa: S310
                    return bool(response.status == 200)
            except OSError:
                return False

        wait_for(healthy, 60, "the gateway's /healthz", every_s=0.2)
        yield url
    finally:
        process.terminate()
        process.wait(timeout=30)


def push(url: str, contract: Contract, events: list[dict[str, Any]]) -> int:
    """POST the file in batches of 500; returns the events the gateway accepted."""
    accepted = 0
    route = f"{url}/v1/contracts/{contract.id}/streams/{STREAM}/events"
    for i in range(0, len(events), 500):
        body = json.dumps(events[i : i + 500]).encode()
        request = urllib.request.Request(  # noqa: S310 - a local gateway
            route,
            data=body,
            method="POST",
            headers={"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=60) as response:  # noqa: S310
            accepted += int(json.loads(response.read())["accepted"])
    return accepted


def raw_count(bootstrap: str, contract: Contract) -> int:
    consumer = KafkaConsumer(**as_settings(bootstrap).kafka_python("tests"), group_id=None)
    try:
        topic = contract.topic_raw(STREAM)
        tps = [TopicPartition(topic, p) for p in range(contract.stream(STREAM).partitions)]
        return int(sum(consumer.end_offsets(tps).values()))
    finally:
        consumer.close()


def test_a_file_pushed_three_times_is_published_once(
    contract_factory: Callable[..., Contract],
    worker_factory: Callable[..., WorkerProcess],
    kafka_bootstrap: str,
    tmp_path: Path,
) -> None:
    contract = contract_factory("micromobility", partitions=2, edit=_long_lateness)
    events = _events(int(time.time() * 1000) - 8 * 3_600_000)
    tokens = tmp_path / "tokens.yaml"
    tokens.write_text(
        f"providers:\n  - id: scootco\n    token_sha256: {hash_token(TOKEN)}\n"
        f"    contracts: [{contract.id}]\n"
    )
    log = tmp_path / "gateways.log"
    with gateway(kafka_bootstrap, contract, tokens, log) as first:
        with gateway(kafka_bootstrap, contract, tokens, log) as second:
            assert push(first, contract, events) == EVENTS
            assert push(second, contract, events) == EVENTS  # the other gateway's filter
    with gateway(kafka_bootstrap, contract, tokens, log) as restarted:
        assert push(restarted, contract, events) == EVENTS  # a restart forgets the filter
    assert raw_count(kafka_bootstrap, contract) == 3 * EVENTS  # every copy reached raw
    end_of_stream(kafka_bootstrap, contract)

    expected = expected_windows(contract, {STREAM: events, "trips": []}, "availability")
    assert len(expected) >= 3, "too few windows to prove anything"
    worker = worker_factory([contract], "event-once")
    worker.start()

    def released() -> bool:
        assert worker.alive(), worker.log_tail()
        return len(read_public(kafka_bootstrap, contract, "availability").windows) >= len(expected)

    wait_for(released, 180, "every availability window", every_s=1.0)
    got = read_public(kafka_bootstrap, contract, "availability")
    assert got.windows == expected, f"{dumps(got.windows)} != {dumps(expected)}"
    text = worker.metrics()
    counted = {
        d: metric_value(text, "respublica_view_events_total", view="availability", disposition=d)
        for d in ("folded", "duplicate")
    }
    assert counted["folded"] > 0
    assert counted["duplicate"] == 2 * counted["folded"]  # the two later copies of each
