"""Every catalogue metric that ``docs/metrics.md`` says the gateway, the validator or a pull
connector serves has a sample in that process after a short real run on the secure broker.

The three run as ``respublica`` processes on one contract: the gateway takes one push, the
validator one record on the ingest topic, ``connect gbfs`` one poll of a feed served from a
file. Counts are checked too: ingested as sent, and every reason code at 0 in a clean run
(the series exist before the first rejection).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from kafka import KafkaAdminClient, KafkaProducer

from broker.deadline import DeadlineExceeded, wait_for
from broker.ingest.auth import hash_token
from broker.kafka import topics
from broker.kafka.local import free_port
from broker.kafka.reasons import Reason, Stage
from broker.processes import metric_sum
from contracts import Contract
from tests.ingest.conftest import DATA
from tests.metric_catalogue import missing, served_by

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
STREAM = "vehicle_events"
TOKEN = "metrics-live-token"  # noqa: S105 - a test token


class Process:
    """A child process with its own log file, stopped by the fixture."""

    def __init__(self, args: list[str], log: Path) -> None:
        self.log = log
        with log.open("wb") as out:
            self.proc = subprocess.Popen(  # noqa: S603 - our CLI and the stdlib's server
                args, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT
            )

    def alive(self) -> bool:
        return self.proc.poll() is None

    def stop(self) -> None:
        if self.alive():
            self.proc.terminate()
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def tail(self) -> str:
        return self.log.read_text(errors="replace")[-3000:]


@pytest.fixture
def processes() -> Iterator[Callable[[str, list[str], Path], Process]]:
    started: list[Process] = []

    def start(name: str, args: list[str], logs: Path) -> Process:
        process = Process(args, logs / f"{name}.log")
        started.append(process)
        return process

    yield start
    for process in started:
        process.stop()


@pytest.fixture
def contract(
    kafka_bootstrap: str, kafka_admin: KafkaAdminClient, contract_copy: Callable[..., Contract]
) -> Iterator[Contract]:
    """A micromobility copy with its topics."""
    found = contract_copy()
    with topics.TopicAdmin(kafka_bootstrap) as admin:
        topics.apply(admin, topics.plan(admin, [found]))
    yield found
    kafka_admin.delete_topics([spec.name for spec in topics.contract_topics(found)])


def scrape(port: int) -> str:
    """A process's ``/metrics`` text ("" while it does not answer yet)."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:  # noqa: S310
            return str(response.read().decode())
    except OSError:
        return ""


def live(process: Process, port: int, names: set[str], what: str) -> str:
    """The ``/metrics`` text once every family in ``names`` has a sample."""
    text: list[str] = [""]
    gaps: list[str] = []

    def complete() -> bool:
        assert process.alive(), process.tail()
        text[0] = scrape(port)
        gaps[:] = missing(text[0], names)
        return bool(text[0]) and not gaps

    try:
        wait_for(complete, 60, f"a sample of every metric of the {what}", 0.5)
    except DeadlineExceeded:
        pytest.fail(f"{what}: no sample of {gaps}\n{process.tail()}")
    return text[0]


def cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "broker.cli", *args]


def event(i: int, now_ms: int) -> dict[str, Any]:
    return {
        "event_id": f"live-{i}",
        "vehicle_id": f"veh-live-{i}",
        "provider_id": "9e2f1c7a-provider",
        "vehicle_type": "scooter_standing",
        "propulsion": "electric",
        "event_type": "available",
        "timestamp": now_ms - 1_000,
        "lat": 45.76,
        "lon": 4.85,
        "battery_pct": 80,
        "trip_id": None,
    }


def assert_clean_counts(text: str, contract: Contract, source: str, ingested: int) -> None:
    """Ingested as sent through ``source``; every reason code a known stream can have at 0."""
    labels = {"contract": contract.id, "stream": STREAM}
    assert metric_sum(text, "respublica_events_ingested_total", **labels, source=source) == ingested
    for reason in (r for r in Reason if r.stage is not Stage.ROUTE):
        pattern = f'reason="{reason.value}"'
        lines = [
            line
            for line in text.splitlines()
            if line.startswith("respublica_events_rejected_total{")
            and pattern in line
            and f'contract="{contract.id}"' in line
            and f'stream="{STREAM}"' in line
        ]
        assert lines and all(line.endswith(" 0.0") for line in lines), (reason, lines)


def test_gateway_validator_and_connect_serve_every_catalogue_metric(
    contract: Contract,
    processes: Callable[[str, list[str], Path], Process],
    producer_factory: Callable[..., KafkaProducer],
    kafka_bootstrap: str,
    tmp_path: Path,
) -> None:
    assert contract.source is not None
    contracts = ["--contracts", str(contract.source), "--bootstrap", kafka_bootstrap]
    now_ms = int(time.time() * 1000)

    # The validator, and one good record on its ingest topic.
    validator_port = free_port()
    validator = processes(
        "validator",
        cli(
            "validator",
            *contracts,
            "--group",
            f"live-{contract.id}",
            "--metrics-port",
            str(validator_port),
        ),
        tmp_path,
    )
    producer = producer_factory()
    producer.send(contract.topic_ingest(STREAM), json.dumps(event(0, now_ms)).encode())
    producer.flush(timeout=60)

    # The gateway, and one push of two events.
    tokens = tmp_path / "tokens.yaml"
    tokens.write_text(
        f"providers:\n  - id: scootco\n    token_sha256: {hash_token(TOKEN)}\n"
        f"    contracts: [{contract.id}]\n"
    )
    port, gateway_metrics = free_port(), free_port()
    gateway = processes(
        "gateway",
        cli(
            "gateway",
            *contracts,
            "--tokens",
            str(tokens),
            "--port",
            str(port),
            "--metrics-port",
            str(gateway_metrics),
        ),
        tmp_path,
    )

    # A GBFS feed from a file, polled once by ``connect gbfs`` (which then waits a minute).
    feed = tmp_path / "feed"
    feed.mkdir()
    shutil.copy(DATA / "gbfs_v2_3_free_bike_status.json", feed / "free_bike_status.json")
    feed_port = free_port()
    server = processes(
        "feed",
        [
            sys.executable,
            "-m",
            "http.server",
            str(feed_port),
            "--bind",
            "127.0.0.1",
            "--directory",
            str(feed),
        ],
        tmp_path,
    )
    connect_port = free_port()
    connect = processes(
        "connect",
        cli(
            "connect",
            "gbfs",
            f"http://127.0.0.1:{feed_port}/free_bike_status.json",
            "--contract",
            contract.id,
            *contracts,
            "--provider-id",
            "9e2f1c7a-provider",
            "--min-interval",
            "60",
            "--metrics-port",
            str(connect_port),
        ),
        tmp_path,
    )

    def pushed() -> bool:
        assert gateway.alive(), gateway.tail()
        body = json.dumps([event(1, now_ms), event(2, now_ms)]).encode()
        request = urllib.request.Request(  # noqa: S310
            f"http://127.0.0.1:{port}/v1/contracts/{contract.id}/streams/{STREAM}/events",
            data=body,
            headers={"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"},
        )
        try:
            with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310
                return bool(response.status == 200)
        except OSError:
            return False

    wait_for(pushed, 60, "the gateway's answer to a push", 0.5)

    text = live(gateway, gateway_metrics, served_by("gateway"), "gateway")
    assert_clean_counts(text, contract, "gateway", 2)
    assert metric_sum(text, "respublica_http_requests_total", route="events", status="200") == 1

    wait_for(
        lambda: (
            metric_sum(
                scrape(validator_port),
                "respublica_events_ingested_total",
                contract=contract.id,
                source="kafka",
            )
            == 1
        ),
        90,
        "the validator's record",
    )
    text = live(validator, validator_port, served_by("validator"), "validator")
    assert_clean_counts(text, contract, "kafka", 1)

    assert server.alive(), server.tail()
    text = live(connect, connect_port, served_by("connect"), "connect")
    violations = metric_sum(
        text, "respublica_gbfs_id_rotation_violations_total", contract=contract.id, source="gbfs"
    )
    assert violations == 0
