"""``respublica kafka start|stop|status``: the happy path and every error the issue names."""

from __future__ import annotations

import os
import socket
import stat
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from broker.kafka.local import (
    KafkaLocalError,
    LocalKafka,
    LocalKafkaConfig,
    free_port_pair,
    java_major_version,
    port_in_use,
)

pytestmark = pytest.mark.integration


def _fake_java(tmp_path: Path, version_line: str) -> str:
    # Only `java -version` is answered; used to test the version check, never to run Kafka.
    script = tmp_path / "java"
    script.write_text(f"#!/bin/sh\necho '{version_line}' >&2\n")
    script.chmod(script.stat().st_mode | stat.S_IEXEC)
    return str(script)


def _config(tmp_path: Path, **overrides: object) -> LocalKafkaConfig:
    values: dict[str, object] = {"port": free_port_pair(), "data_dir": tmp_path / "data"}
    values.update(overrides)
    return LocalKafkaConfig(**values)  # type: ignore[arg-type]


@pytest.fixture
def empty_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    cache = tmp_path / "cache"
    monkeypatch.setenv("RESPUBLICA_CACHE", str(cache))
    return cache


def test_missing_java_is_named(tmp_path: Path) -> None:
    broker = LocalKafka(_config(tmp_path, java="no-such-java-binary"))
    with pytest.raises(KafkaLocalError, match=r"'no-such-java-binary' not found on PATH.*Java 17"):
        broker.start()


@pytest.mark.parametrize(
    ("line", "major"),
    [('openjdk version "11.0.21" 2023-10-17', 11), ('java version "1.8.0_392"', 8)],
)
def test_old_java_is_refused(tmp_path: Path, line: str, major: int) -> None:
    java = _fake_java(tmp_path, line)
    assert java_major_version(java) == major
    broker = LocalKafka(_config(tmp_path, java=java))
    with pytest.raises(KafkaLocalError, match=rf"Java {major} found .* needs Java 17 or newer"):
        broker.start()


def test_real_java_is_accepted(tmp_path: Path) -> None:
    assert java_major_version("java") >= 17


def test_missing_maven_is_named(tmp_path: Path, empty_cache: Path) -> None:
    broker = LocalKafka(_config(tmp_path, mvn="no-such-mvn"))
    with pytest.raises(KafkaLocalError, match=r"'no-such-mvn' \(Maven\) not found on PATH"):
        broker.ensure_jars()


def test_failed_jar_download_is_reported_and_leaves_no_partial_cache(
    tmp_path: Path, empty_cache: Path
) -> None:
    broker = LocalKafka(_config(tmp_path, kafka_version="0.0.0-does-not-exist"))
    with pytest.raises(KafkaLocalError, match=r"could not fetch the Kafka 0.0.0-does-not-exist"):
        broker.ensure_jars()
    assert not (empty_cache / "kafka" / "0.0.0-does-not-exist" / "libs").exists()


@pytest.fixture
def occupied_port() -> Iterator[int]:
    port = free_port_pair()
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", port))
        sock.listen()
        yield port


def test_port_taken_is_refused(tmp_path: Path, occupied_port: int) -> None:
    broker = LocalKafka(_config(tmp_path, port=occupied_port))
    expected = rf"port {occupied_port} on 127.0.0.1 is already in use"
    with pytest.raises(KafkaLocalError, match=expected):
        broker.start()
    assert not broker.status().running


def test_broker_not_up_in_time_shows_log_tail_and_cleans_up(tmp_path: Path) -> None:
    config = _config(tmp_path, start_timeout_s=0.5)
    broker = LocalKafka(config, cluster_probe=lambda _bootstrap, _timeout: None)
    broker.ensure_jars()
    expected = r"did not come up within 0.5s; last lines of its log:\n"
    with pytest.raises(KafkaLocalError, match=expected):
        broker.start()
    assert not broker.status().running
    assert not config.pid_file.exists()


def _cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "broker.cli", "kafka", *args],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
        check=False,
    )


def test_cli_start_status_stop_is_idempotent(tmp_path: Path) -> None:
    port = free_port_pair()
    where = ["--port", str(port), "--data-dir", str(tmp_path / "data")]
    env = {k: v for k, v in os.environ.items() if k != "KAFKA_BOOTSTRAP"}
    try:
        first = _cli("start", *where, env=env)
        assert first.returncode == 0, first.stderr
        assert f"Kafka started: bootstrap 127.0.0.1:{port}" in first.stdout
        again = _cli("start", *where, env=env)
        assert "already running" in again.stdout
        status = _cli("status", *where, env=env)
        assert status.returncode == 0
        assert "running: pid" in status.stdout
    finally:
        stop = _cli("stop", *where, env=env)
    assert stop.stdout.strip() == "Kafka stopped"
    after = _cli("status", *where, env=env)
    assert after.returncode == 3
    assert "not running" in after.stdout
    assert not port_in_use(port)


def test_cli_error_exits_non_zero_with_message(tmp_path: Path, occupied_port: int) -> None:
    env = {k: v for k, v in os.environ.items() if k != "KAFKA_BOOTSTRAP"}
    result = _cli("start", "--port", str(occupied_port), "--data-dir", str(tmp_path), env=env)
    assert result.returncode == 1
    assert result.stderr.startswith("respublica: error: port")


def test_cli_uses_external_cluster_when_kafka_bootstrap_is_set(tmp_path: Path) -> None:
    env = dict(os.environ, KAFKA_BOOTSTRAP="127.0.0.1:1")
    result = _cli("start", "--data-dir", str(tmp_path), env=env)
    assert result.returncode == 0
    assert "using the cluster at 127.0.0.1:1, starting nothing" in result.stdout
    assert not (tmp_path / "kafka.pid").exists()


def test_stop_help_says_what_its_timeout_waits_for() -> None:
    stop = _cli("stop", "--help", env=dict(os.environ))
    start = _cli("start", "--help", env=dict(os.environ))
    assert "come up" not in stop.stdout and "to exit" in stop.stdout
    assert "come up" in start.stdout


def test_an_explicit_data_dir_stops_the_local_broker_even_with_kafka_bootstrap_set(
    tmp_path: Path,
) -> None:
    # The broker stands in as a process of ours named by the data dir's pid file.
    data = tmp_path / "data"
    data.mkdir()
    stand_in = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    reaper = threading.Thread(target=stand_in.wait)  # reaped at once, as init would
    reaper.start()
    try:
        (data / "kafka.pid").write_text(f"{stand_in.pid}\n")
        env = dict(os.environ, KAFKA_BOOTSTRAP="kafka.example.org:9093")
        implicit = _cli("stop", env=env)
        assert "not ours to stop" in implicit.stdout
        assert stand_in.poll() is None
        status = _cli("status", "--data-dir", str(data), env=env)
        assert status.returncode == 0 and f"running: pid {stand_in.pid}" in status.stdout
        explicit = _cli("stop", "--data-dir", str(data), "--timeout", "10", env=env)
        assert explicit.returncode == 0, explicit.stderr
        assert explicit.stdout.strip() == "Kafka stopped"
        reaper.join(timeout=30)
        assert stand_in.returncode is not None
        assert not (data / "kafka.pid").exists()
    finally:
        stand_in.kill()
        reaper.join(timeout=30)
