"""``respublica bench`` end to end on a small input: every variant runs on the real broker, P's
releases are checked against the oracle, and F's output is checked and reported.

Only correctness is asserted here: speed is what the bench reports, never a test's verdict.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from broker.bench.consumers import compare
from broker.bench.harness import BenchOptions, render, run
from broker.kafka.settings import KafkaSettings
from broker.worker.supervise import available_cores
from contracts.copies import example_data, write_contract


@pytest.mark.timeout(900)
def test_bench_runs_every_variant_and_checks_outputs(kafka_bootstrap: str, tmp_path: Path) -> None:
    options = BenchOptions(
        events=4_000,
        partitions=2,
        rounds=1,
        variants=("b1", "b2", "p", "f", "pa"),
        workdir=tmp_path,
    )
    summary = run(kafka_bootstrap, options)
    variants = summary["variants"]
    assert set(variants) == {"b1", "b2", "p", "f", "pa"}
    for name in ("b1", "b2"):
        assert variants[name]["events"] == 4_000 + 2  # and one end-of-stream mark per partition
    for name in ("p", "pa"):
        assert variants[name]["oracle_equal"] is True  # run() raises rather than report a wrong P
        assert variants[name]["windows"] > 0
    assert variants["p"]["processes"] == 1
    # auto: the cores here, capped by the raw partitions (2 streams × 2)
    assert variants["pa"]["processes"] == min(available_cores(), 4)
    f = variants["f"]
    # F is checked, not required to be right: its sink was read and compared group by group
    # (what it gets right depends on when faust's wall-clock timer closed its windows).
    assert f["groups_expected"] > 0
    assert f["groups_matching"] + f["groups_missing"] == f["groups_expected"]
    assert all(
        v["events_per_s_median"] > 0 and v["cpu_us_per_event"] > 0 for v in variants.values()
    )
    assert set(summary["ratios"]) == {"P/B1", "B2/B1", "P/B2", "P/F", "PA/B1", "PA/P"}
    table = render(summary)
    assert "P vs the oracle: every release equal" in table
    assert "PA" in table and "vs the oracle: every release equal" in table
    assert "F vs the oracle" in table


@pytest.mark.timeout(600)
def test_bench_takes_any_copy_of_an_example(kafka_bootstrap: str, tmp_path: Path) -> None:
    data = example_data("navigation")  # a noised view: the oracle needs the shared noise key
    data["id"] = "my-navigation"
    data["views"] = [v for v in data["views"] if v["name"] == "alerts_by_type"]
    data["views"][0]["k"] += 1
    for consumer in data["consumers"]:
        consumer["views"] = ["alerts_by_type"]
    contract = write_contract(data, tmp_path)
    options = BenchOptions(
        events=2_000,
        partitions=2,
        rounds=1,
        variants=("b1", "p", "f"),
        workdir=tmp_path / "work",
        contract=contract,
    )
    summary = run(kafka_bootstrap, options)
    assert summary["options"]["simulator"] == "navigation"
    assert summary["options"]["views"] == ["alerts_by_type"]
    variants = summary["variants"]
    assert set(variants) == {"b1", "p"}  # F implements the micromobility availability view only
    assert variants["p"]["oracle_equal"] is True and variants["p"]["windows"] > 0


@pytest.mark.integration
@pytest.mark.timeout(600)
def test_respublica_bench_runs_on_its_own_secure_broker(tmp_path: Path) -> None:
    # No cluster configured: the command starts a throw-away secure broker, and every client
    # of the harness and its child processes must get that broker's credentials.
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("RESPUBLICA_KAFKA_") and k != "KAFKA_BOOTSTRAP"
    }
    env["HOME"] = os.environ.get("HOME", str(tmp_path))  # the cached Kafka jars
    args = ["bench", "--events", "500", "--rounds", "1", "--variants", "b1"]
    done = subprocess.run(
        [sys.executable, "-m", "broker.cli", *args, "--workdir", str(tmp_path)],
        env=env,
        capture_output=True,
        text=True,
        timeout=540,
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    assert "B1" in done.stdout


@pytest.mark.timeout(300)
def test_both_consumers_read_the_whole_topic(kafka_settings: KafkaSettings, tmp_path: Path) -> None:
    readings = compare(kafka_settings, 1_000, 1, tmp_path)
    assert [r.client for r in readings] == ["kafka-python", "aiokafka"]
    assert all(r.records == 1_000 + 4 and r.cpu_seconds > 0 for r in readings)  # + 4 end marks
