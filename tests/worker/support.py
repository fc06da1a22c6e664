"""Helpers of the worker tests: isolated contracts, raw input, public output, the oracle."""

from __future__ import annotations

import json
import os
import secrets
import signal
import subprocess
import sys
import urllib.request
from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from kafka import KafkaAdminClient, KafkaProducer

from broker.bench.verify import (  # noqa: F401  (re-exported for the tests)
    REPORT_FIELDS,
    PublicView,
    _group_row,
    _num,
    expected_windows,
    oracle_windows,
    read_public,
)
from broker.deadline import wait_for as deadline_wait_for
from broker.kafka import topics
from broker.kafka.internal import CONTROL_HEADER, END_OF_STREAM_MARK
from broker.kafka.serde import Schemas
from broker.processes import metric_sum as metric_value  # noqa: F401  (re-exported)
from connectors.base import Accepted
from connectors.simulate.base import SimOptions, take
from connectors.simulate.mobility import MobilitySimulator
from connectors.simulate.rentals import RentalsSimulator
from connectors.validate import StreamValidator
from contracts import load_contracts
from contracts.copies import example_data, write_contract
from contracts.model import Contract

ROOT = Path(__file__).resolve().parents[2]


def unique_contract(
    tmp_path: Path,
    example: str,
    *,
    partitions: int | None = None,
    edit: Callable[[dict[str, Any]], None] | None = None,
) -> Contract:
    """An example contract under a fresh id (so tests never share topics or state)."""
    data = example_data(example)
    data["id"] = f"{data['id'][:40]}-{secrets.token_hex(3)}"
    for stream in data["streams"]:
        if partitions is not None:
            stream["partitions"] = partitions
    if edit is not None:
        edit(data)
    return load_contracts([write_contract(data, tmp_path)], now=datetime.now(UTC))[0]


def create_topics(bootstrap: str, contract: Contract) -> list[str]:
    """``respublica apply`` for one contract; returns the topic names (to delete later)."""
    with topics.TopicAdmin(bootstrap) as admin:
        topics.apply(admin, topics.plan(admin, [contract]))
    return [spec.name for spec in topics.contract_topics(contract)]


def delete_topics(admin: KafkaAdminClient, names: Iterable[str]) -> None:
    """Best-effort cleanup."""
    try:
        admin.delete_topics(list(names))
    except Exception:  # noqa: S110 - cleanup must not mask the test's own failure
        pass


def encode_raw(
    contract: Contract, stream: str, records: Iterable[dict[str, Any]]
) -> list[Accepted]:
    """Records encoded exactly as the validator writes them to ``raw.<c>.<s>``."""
    validator = StreamValidator(contract, stream, schemas=Schemas.from_contracts([contract]))
    time_field = contract.stream(stream).event_time
    out = []
    for record in records:
        outcome = validator.validate_json(
            record, now_ms=record[time_field], connector="test", source="test"
        )
        assert isinstance(outcome, Accepted), outcome
        out.append(outcome)
    return out


def produce_raw(producer: KafkaProducer, topic: str, accepted: Iterable[Accepted]) -> int:
    """Produce keyed by subject (Kafka's default partitioner), like the validator."""
    n = 0
    for item in accepted:
        producer.send(topic, key=item.key, value=item.value, headers=list(item.headers))
        n += 1
    producer.flush(timeout=120)
    return n


def produce_end_of_stream(producer: KafkaProducer, topic: str, partitions: int) -> None:
    """The documented control record that closes every window of a finished replay."""
    for partition in range(partitions):
        producer.send(
            topic,
            partition=partition,
            key=None,
            value=b"",
            headers=[(CONTROL_HEADER, END_OF_STREAM_MARK)],
        )
    producer.flush(timeout=60)


def wait_for(
    condition: Callable[[], bool], timeout_s: float, what: str, every_s: float = 0.5
) -> None:
    """``broker.deadline.wait_for``, polling every half second by default."""
    deadline_wait_for(condition, timeout_s, what, every_s)


MASTER_KEY = "11" * 32


class WorkerProcess:
    """A ``respublica worker`` subprocess with its own web port and log file."""

    def __init__(
        self,
        bootstrap: str,
        contract_files: list[Path],
        worker_id: str,
        group: str,
        log_dir: Path,
        port: int,
        extra: list[str] | None = None,
    ) -> None:
        self.args = [
            sys.executable,
            "-m",
            "broker.cli",
            "worker",
            "--bootstrap",
            bootstrap,
            "--worker-id",
            worker_id,
            "--group",
            group,
            "--web-port",
            str(port),
            "--checkpoint-interval",
            "0.5",
            "--log-level",
            "warning",
            # One process, as before --processes existed: a SIGKILL kills the whole worker
            # (``extra`` may override it: argparse keeps the last).
            "--processes",
            "1",
            *[a for f in contract_files for a in ("--contracts", str(f))],
            *(extra or []),
        ]
        self.worker_id = worker_id
        self.port = port
        self.log_path = log_dir / f"{worker_id}.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self.starts = 0

    def start(self) -> None:
        """Start (or restart) the process."""
        self.starts += 1
        # TMPDIR: faust's scratch directory lands in the test's tmp_path, even after SIGKILL.
        env = dict(
            os.environ,
            RESPUBLICA_MASTER_KEY=MASTER_KEY,
            PYTHONUNBUFFERED="1",
            TMPDIR=str(self.log_path.parent),
        )
        log = self.log_path.open("ab")
        self.proc = subprocess.Popen(
            self.args, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT
        )

    def healthy(self) -> bool:
        """``/healthz`` answers 200."""
        try:
            with urllib.request.urlopen(
                f"http://127.0.0.1:{self.port}/healthz",  # noqa: S310
                timeout=2,
            ) as response:
                return bool(response.status == 200)
        except OSError:
            return False

    def metrics(self) -> str:
        """The ``/metrics`` text."""
        url = f"http://127.0.0.1:{self.port}/metrics"
        with urllib.request.urlopen(url, timeout=5) as response:  # noqa: S310
            return str(response.read().decode())

    def alive(self) -> bool:
        """The process runs."""
        return self.proc is not None and self.proc.poll() is None

    def kill(self) -> None:
        """SIGKILL, no goodbye."""
        if self.alive():
            assert self.proc is not None
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(timeout=30)

    def terminate(self, timeout_s: float = 60.0) -> int | None:
        """SIGTERM and wait for the graceful stop."""
        if self.proc is None:
            return None
        if self.alive():
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode

    def log_tail(self, chars: int = 4000) -> str:
        """The end of the process's output."""
        return self.log_path.read_text(errors="replace")[-chars:]


def events_of(records: Iterable[Any], stream: str) -> list[dict[str, Any]]:
    """The records of one stream from a simulator's ``SimRecord`` iterable."""
    return [r.record for r in records if r.stream == stream]


def dumps(windows: Mapping[Any, Any]) -> str:
    """Short text of a window map for assertion messages."""
    return json.dumps({str(k): str(v)[:200] for k, v in list(windows.items())[:5]})


def feed(
    producer: KafkaProducer, contract: Contract, events: dict[str, list[dict[str, Any]]]
) -> None:
    """Encode like the validator, produce keyed by subject, then end every partition."""
    for stream, records in events.items():
        topic = contract.topic_raw(stream)
        produce_raw(producer, topic, encode_raw(contract, stream, records))
        produce_end_of_stream(producer, topic, contract.stream(stream).partitions)


def mobility_events(n: int, seed: int = 7) -> dict[str, list[dict[str, Any]]]:
    """``n`` vehicle events, and the trips the simulator emitted meanwhile."""
    out: dict[str, list[dict[str, Any]]] = {"vehicle_events": [], "trips": []}
    for item in MobilitySimulator(SimOptions(seed=seed)).records():
        out[item.stream].append(item.record)
        if len(out["vehicle_events"]) >= n:
            return out
    raise AssertionError("the simulator is endless")


def rental_events(n: int, seed: int = 3) -> dict[str, list[dict[str, Any]]]:
    sim = take(RentalsSimulator(SimOptions(seed=seed, size=300)).records(), n)
    return {"activity": events_of(sim, "activity")}
