"""``kafka start`` succeeds only for the broker it started, never for whoever answers the port.

The race is reproduced by skipping the free-port check (as if the port was free when checked
and taken just after): the launched broker cannot bind, and the port answers as another
cluster (the session's broker) or as a plain socket. Each test launches a JVM that fails to
bind within seconds; the normal start is ``test_cli_start_status_stop_is_idempotent``.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from broker.kafka.local import (
    KafkaLocalError,
    LocalKafka,
    LocalKafkaConfig,
    answering_cluster_id,
    formatted_cluster_id,
    free_port_pair,
)

pytestmark = pytest.mark.integration


@pytest.fixture
def racing(monkeypatch: pytest.MonkeyPatch) -> None:
    """The port looked free when checked: someone else takes it before the broker binds."""
    monkeypatch.setattr(LocalKafka, "_check_ports", lambda self: None)


def _session_port(kafka_bootstrap: str) -> int:
    host, _, port = kafka_bootstrap.rpartition(":")
    if host not in ("127.0.0.1", "localhost"):
        pytest.skip("the session broker is not a local one")
    return int(port)


def test_a_foreign_broker_on_the_port_is_not_taken_for_ours(
    kafka_bootstrap: str, tmp_path: Path, racing: None
) -> None:
    foreign = answering_cluster_id(kafka_bootstrap, 5.0)  # as the session's admin
    assert foreign is not None
    config = LocalKafkaConfig(port=_session_port(kafka_bootstrap), data_dir=tmp_path / "data")
    broker = LocalKafka(config)
    with pytest.raises(KafkaLocalError) as caught:
        broker.start()
    ours = formatted_cluster_id(config.data_dir / "storage" / "meta.properties")
    assert ours != foreign
    # The new broker's probe trusts only its own CA: the foreign broker does not answer it, and
    # the launched JVM cannot bind the port.
    assert str(caught.value).startswith(f"port {config.port} on 127.0.0.1 was taken")
    assert not broker.status().running and not config.pid_file.exists()
    assert answering_cluster_id(kafka_bootstrap, 5.0) == foreign  # the session broker lives on


def test_a_foreign_cluster_answering_our_probe_is_named(tmp_path: Path, racing: None) -> None:
    # A probe that reaches a cluster with another id (here: told so) names that cluster.
    config = LocalKafkaConfig(port=free_port_pair(), data_dir=tmp_path / "data", insecure=True)
    broker = LocalKafka(config, cluster_probe=lambda bootstrap, timeout: "AnotherClusterIdxxxxxx")
    with pytest.raises(KafkaLocalError) as caught:
        broker.start()
    ours = formatted_cluster_id(config.data_dir / "storage" / "meta.properties")
    assert str(caught.value).startswith(
        f"port {config.port} on 127.0.0.1 belongs to another Kafka cluster (id "
        f"AnotherClusterIdxxxxxx), not to the broker this command started (id {ours}"
    )
    assert not broker.status().running and not config.pid_file.exists()


@pytest.fixture
def plain_listener() -> Iterator[int]:
    port = free_port_pair()
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", port))
        sock.listen()
        yield port


def test_a_plain_listener_on_the_port_is_named(
    plain_listener: int, tmp_path: Path, racing: None
) -> None:
    config = LocalKafkaConfig(port=plain_listener, data_dir=tmp_path / "data")
    broker = LocalKafka(config)  # the probe gets no Kafka answer from a plain socket
    with pytest.raises(KafkaLocalError, match=rf"port {plain_listener} on 127.0.0.1 was taken"):
        broker.start()
    assert not broker.status().running and not config.pid_file.exists()


def test_the_cluster_id_comes_from_meta_properties(tmp_path: Path) -> None:
    meta = tmp_path / "meta.properties"
    meta.write_text("#\nnode.id=1\ndirectory.id=abc\nversion=1\ncluster.id=Xy-z_0123\n")
    assert formatted_cluster_id(meta) == "Xy-z_0123"
    meta.write_text("version=1\n")
    with pytest.raises(KafkaLocalError, match="has no cluster.id"):
        formatted_cluster_id(meta)


def test_an_insecure_broker_is_probed_without_the_environments_credentials(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A shell (or the test session) may name a secure cluster's admin: an --insecure start
    # must not probe its own PLAINTEXT port with TLS and SCRAM (it would wait out the timeout).
    secure = tmp_path / "admin.yaml"
    secure.write_text(
        "security_protocol: SASL_SSL\nsasl_mechanism: SCRAM-SHA-512\n"
        "username: admin\npassword: not-this-one\n"
    )
    monkeypatch.setenv("RESPUBLICA_KAFKA_CONFIG", str(secure))
    broker = LocalKafka(LocalKafkaConfig(port=free_port_pair(), data_dir=tmp_path, insecure=True))
    probe = broker._probe_settings(broker.config.bootstrap)
    assert not isinstance(probe, str)
    assert (probe.security_protocol, probe.username) == ("PLAINTEXT", None)
