"""``respublica simulate``, ``replay``, ``gateway hash-token``, and the load generator."""

from __future__ import annotations

import asyncio
import io
import json
import os
import socket
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from kafka import KafkaAdminClient, KafkaConsumer
from kafka.admin import NewTopic

from broker.cli import main
from broker.ingest.auth import hash_token
from broker.ingest.loadgen import render_batches
from broker.ingest.loadgen import run as load
from broker.kafka import topics
from broker.kafka.local import free_port
from broker.kafka.serde import Schemas
from connectors.base import Accepted
from connectors.simulate import SimOptions, simulator, take
from connectors.validate import StreamValidator
from contracts import Contract, load_contracts
from contracts.copies import example_data, write_contract
from contracts.errors import RespublicaError
from tests.ingest.conftest import DATA, NOW_MS, TOKENS, ClientFactory, MemoryWriter


def test_simulate_to_file_is_deterministic(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    first, second = tmp_path / "a.ndjson", tmp_path / "b.ndjson"
    for out in (first, second):
        assert (
            main(
                [
                    "simulate",
                    "mobility",
                    "--events",
                    "500",
                    "--seed",
                    "9",
                    "--stream",
                    "trips",
                    "--out",
                    str(out),
                ]
            )
            == 0
        )
    lines = first.read_bytes().splitlines()
    assert first.read_bytes() == second.read_bytes()
    assert len(lines) == 500 and all("trip_id" in json.loads(line) for line in lines)
    assert "wrote 500 events" in capsys.readouterr().err


def test_simulate_mixes_the_bad_share(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "mixed.ndjson"
    assert (
        main(
            [
                "simulate",
                "navigation",
                "--events",
                "2000",
                "--bad-share",
                "0.1",
                "--start",
                "2026-06-02T08:00:00Z",
                "--out",
                str(out),
            ]
        )
        == 0
    )
    lines = out.read_bytes().splitlines()
    assert 2100 < len(lines) < 2400
    err = capsys.readouterr().err
    assert "malformed_json=" in err and "outside_territory=" in err


def test_hash_token_reads_stdin(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr("sys.stdin", io.StringIO("s3cret-token\n"))
    assert main(["gateway", "hash-token"]) == 0
    assert capsys.readouterr().out.strip() == hash_token("s3cret-token")
    assert main(["gateway", "new-token"]) == 0
    token_line, hash_line = capsys.readouterr().out.splitlines()
    assert hash_token(token_line.split()[-1]) == hash_line.split()[-1]


@pytest.mark.parametrize(
    ("tls", "complaint"),
    [
        (["--tls-cert", "cert.pem"], "give both --tls-cert and --tls-key"),
        (["--tls-cert", "cert.pem", "--tls-key", "key.pem"], "cannot load the TLS certificate"),
    ],
)
def test_gateway_refuses_half_or_unreadable_tls_settings(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    tls: list[str],
    complaint: str,
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "key.pem").write_text("SENTINEL-KEY-MATERIAL")
    tokens = tmp_path / "tokens.yaml"
    tokens.write_text(
        f"providers:\n  - id: scootco\n    token_sha256: {hash_token('x')}\n"
        "    contracts: [lyon-micromobility]\n"
    )
    assert main(["gateway", "--tokens", str(tokens), *tls]) == 1
    err = capsys.readouterr().err
    assert complaint in err and "SENTINEL" not in err


async def test_replay_pushes_a_file_through_the_gateway(
    tmp_path: Path, gateway_client: ClientFactory, examples: dict[str, Contract]
) -> None:
    source = tmp_path / "events.ndjson"
    assert (
        await asyncio.to_thread(
            main,
            [
                "simulate",
                "mobility",
                "--events",
                "1200",
                "--stream",
                "vehicle_events",
                "--size",
                "3000",
                "--start",
                "2026-06-01T11:57:00Z",
                "--out",
                str(source),
            ],
        )
        == 0
    )
    last = max(json.loads(line)["timestamp"] for line in source.read_bytes().splitlines())
    writer = MemoryWriter()
    client = await gateway_client(
        [examples["lyon-micromobility"]], writer, clock=lambda: last + 1000
    )
    url = str(client.make_url("/"))
    code = await asyncio.to_thread(
        main,
        [
            "replay",
            str(source),
            "--contract",
            "lyon-micromobility",
            "--stream",
            "vehicle_events",
            "--to-gateway",
            url,
            "--token",
            TOKENS["scootco"],
            "--batch",
            "500",
        ],
    )
    assert code == 0
    assert len(writer.topic("raw.lyon-micromobility.vehicle_events")) == 1200
    assert writer.topic("dlq.") == []


@pytest.mark.integration
def test_simulate_to_kafka_produces_json_to_ingest(
    contract_copy: Callable[..., Contract],
    kafka_admin: KafkaAdminClient,
    kafka_bootstrap: str,
    consumer_factory: Callable[..., KafkaConsumer],
    tmp_path: Path,
) -> None:
    contract = contract_copy()
    topic = contract.topic_ingest("trips")
    kafka_admin.create_topics([NewTopic(topic, 2, 1)])
    try:
        assert (
            main(
                [
                    "simulate",
                    "mobility",
                    "--events",
                    "300",
                    "--stream",
                    "trips",
                    "--contract",
                    contract.id,
                    "--to-kafka",
                    "--bootstrap",
                    kafka_bootstrap,
                ]
            )
            == 0
        )
        consumer = consumer_factory(topic)
        records: list[Any] = []
        for _ in range(40):
            for batch in consumer.poll(timeout_ms=500).values():
                records.extend(batch)
            if len(records) >= 300:
                break
        assert len(records) == 300
        keys = {r.key for r in records}
        assert all(json.loads(r.value)["vehicle_id"].encode() == r.key for r in records)
        assert len(keys) > 10
    finally:
        kafka_admin.delete_topics([topic])


async def test_load_generator_reports_rate_and_latency(
    gateway_client: ClientFactory, examples: dict[str, Contract]
) -> None:
    client = await gateway_client(
        [examples["lyon-micromobility"]], MemoryWriter(), clock=lambda: NOW_MS
    )
    bodies = render_batches(2000, 500, seed=1)
    bodies = [b.replace(b"1111111111111", str(NOW_MS).encode()) for b in bodies]
    url = str(client.make_url("/v1/contracts/lyon-micromobility/streams/vehicle_events/events"))
    report = await load(url, TOKENS["scootco"], bodies, concurrency=2)
    assert (report.events, report.accepted, dict(report.statuses)) == (2000, 2000, {200: 4})
    assert "accepted events/s" in report.render()


@pytest.mark.skipif(
    os.environ.get("RESPUBLICA_BENCH") != "1", reason="benchmark: set RESPUBLICA_BENCH=1"
)
@pytest.mark.parametrize("kind", ["mobility", "rentals", "navigation"])
def test_bench_simulator_speed(kind: str) -> None:
    started = time.perf_counter()
    count = sum(1 for _ in take(simulator(kind, SimOptions(seed=6)).records(), 200_000))
    elapsed = time.perf_counter() - started
    print(f"\n{kind}: {count} events in {elapsed:.2f}s ({count / elapsed:,.0f}/s)")


@pytest.mark.integration
def test_connect_rentals_imports_a_file_into_raw_and_dlq(
    contract_copy: Callable[..., Contract],
    kafka_admin: KafkaAdminClient,
    kafka_bootstrap: str,
    consumer_factory: Callable[..., KafkaConsumer],
    capsys: pytest.CaptureFixture[str],
) -> None:
    contract = contract_copy("rentals.yaml")
    raw, dlq = contract.topic_raw("activity"), contract.topic_dlq("activity")
    kafka_admin.create_topics([NewTopic(raw, 2, 1), NewTopic(dlq, 1, 1)])
    try:
        code = main(
            [
                "connect",
                "rentals",
                str(DATA / "rentals_activity.csv"),
                "--contract",
                contract.id,
                "--contracts",
                str(contract.source),
                "--bootstrap",
                kafka_bootstrap,
                "--now",
                "2026-06-01T12:00:00Z",
            ]
        )
        out = capsys.readouterr()
        assert code == 2  # some rows were rejected
        assert out.out.splitlines()[0] == "row 4: WRONG_TYPE at nights"
        assert "11 rows: 2 accepted, 9 rejected" in out.err
        counts = {}
        for topic, want in ((raw, 2), (dlq, 9)):
            consumer = consumer_factory(topic)
            records: list[Any] = []
            for _ in range(40):
                for batch in consumer.poll(timeout_ms=500).values():
                    records.extend(batch)
                if len(records) >= want:
                    break
            counts[topic] = len(records)
        assert counts == {raw: 2, dlq: 9}
    finally:
        kafka_admin.delete_topics([raw, dlq])


@pytest.mark.skipif(
    os.environ.get("RESPUBLICA_BENCH") != "1", reason="benchmark: set RESPUBLICA_BENCH=1"
)
def test_bench_gateway_throughput(
    kafka_bootstrap: str,
    kafka_admin: KafkaAdminClient,
    examples: dict[str, Contract],
    tmp_path: Path,
) -> None:
    """A gateway process on the session broker, loaded by ``broker.ingest.loadgen``; prints the
    report (no timing assertion). The example contracts' topics are deleted afterwards."""
    created = [s.name for c in examples.values() for s in topics.contract_topics(c)]
    try:
        run_gateway_bench(kafka_bootstrap, tmp_path)
    finally:
        kafka_admin.delete_topics(created)


def run_gateway_bench(kafka_bootstrap: str, tmp_path: Path) -> None:
    subprocess.run(
        [sys.executable, "-m", "broker.cli", "apply", "--bootstrap", kafka_bootstrap],
        check=True,
        capture_output=True,
    )
    tokens = tmp_path / "tokens.yaml"
    tokens.write_text(
        f"providers:\n  - id: scootco\n    token_sha256: {hash_token('bench')}\n"
        "    contracts: [lyon-micromobility]\n"
    )
    port = free_port()
    gateway = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "broker.cli",
            "gateway",
            "--tokens",
            str(tokens),
            "--bootstrap",
            kafka_bootstrap,
            "--port",
            str(port),
            "--metrics-port",
            "0",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_for_port(port)
        result = subprocess.run(
            [
                sys.executable,
                "-m",
                "broker.ingest.loadgen",
                "--url",
                f"http://127.0.0.1:{port}",
                "--token",
                "bench",
                "--events",
                "200000",
                "--concurrency",
                "8",
            ],
            check=True,
            capture_output=True,
            text=True,
        )
        print("\n" + result.stdout)
    finally:
        gateway.terminate()
        gateway.wait(timeout=30)


def wait_for_port(port: int, deadline_s: float = 30.0) -> None:
    deadline = time.monotonic() + deadline_s
    while time.monotonic() < deadline:
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.1)
    msg = "the gateway did not start listening"
    raise AssertionError(msg)


def _validated(contract: Contract, lines: list[bytes], now_ms: int) -> Counter[str]:
    """Outcomes of simulated NDJSON lines (mobility: both streams) validated at ``now_ms``."""
    schemas = Schemas.from_contracts([contract])
    validators = {
        s.name: StreamValidator(contract, s.name, schemas=schemas) for s in contract.streams
    }
    outcomes: Counter[str] = Counter()
    for line in lines:
        record = json.loads(line)
        stream = "trips" if "trip_id" in record and "end_time" in record else "vehicle_events"
        outcome = validators[stream].validate(line, now_ms=now_ms, connector="t", source="t")
        outcomes["accepted" if isinstance(outcome, Accepted) else outcome.reason.value] += 1
    return outcomes


def test_simulate_start_now_ends_now_within_the_allowed_lateness(
    tmp_path: Path, examples: dict[str, Contract], capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "now.ndjson"
    before = int(time.time() * 1000)
    code = main(["simulate", "mobility", "--events", "1000", "--start", "now", "--out", str(out)])
    assert code == 0
    after = int(time.time() * 1000)
    lines = out.read_bytes().splitlines()
    times = [json.loads(line).get("timestamp") or json.loads(line)["end_time"] for line in lines]
    assert max(times) <= after
    assert min(times) >= before - 5 * 60_000  # the tightest lateness of the streams sent
    outcomes = _validated(examples["lyon-micromobility"], lines, int(time.time() * 1000))
    assert outcomes == Counter({"accepted": 1000})
    assert "compressed" in capsys.readouterr().err


def test_simulate_feeds_a_custom_contract(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = example_data("micromobility")
    data["id"] = "fictional-city"
    data["territory"] = {"bbox": [2.05, 47.0, 2.13, 47.06]}
    (tmp_path / "c").mkdir()
    path = write_contract(data, tmp_path / "c")
    out = tmp_path / "custom.ndjson"
    code = main(
        [
            "simulate",
            "mobility",
            "--events",
            "1500",
            "--start",
            "now",
            "--contract",
            str(path),
            "--out",
            str(out),
        ]
    )
    assert code == 0
    contract = load_contracts([path], now=datetime.now(UTC))[0]
    lines = out.read_bytes().splitlines()
    assert _validated(contract, lines, int(time.time() * 1000)) == Counter({"accepted": 1500})
    trips = [json.loads(line) for line in lines if b"start_lat" in line]
    assert trips and all(47.0 <= t["start_lat"] <= 47.06 for t in trips)


def test_simulate_refuses_a_contract_whose_streams_do_not_fit(tmp_path: Path) -> None:
    data = example_data("navigation")
    (tmp_path / "c").mkdir()
    path = write_contract(data, tmp_path / "c")
    with pytest.raises(RespublicaError, match="no stream vehicle_events"):
        _run_simulate(["mobility", "--contract", str(path), "--out", str(tmp_path / "x")])


def _run_simulate(args: list[str]) -> int:
    from broker.cli import build_parser

    parsed = build_parser().parse_args(["simulate", *args])
    return int(parsed.handler(parsed))
