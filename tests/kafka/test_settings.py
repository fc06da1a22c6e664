"""One ``KafkaSettings`` builds every client: its sources, its renderings, its secrets."""

from __future__ import annotations

import re
import ssl
from pathlib import Path

import pytest

from broker.kafka.settings import KafkaSettings, KafkaSettingsError

REPO = Path(__file__).resolve().parents[2]
SECRET = "s3cr3t-Pa55word-never-printed"  # noqa: S105 - a planted value


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("RESPUBLICA_CACHE", str(tmp_path / "cache"))  # no local broker's admin
    for name in (
        "RESPUBLICA_KAFKA_CONFIG",
        "KAFKA_BOOTSTRAP",
        "RESPUBLICA_KAFKA_BOOTSTRAP",
        "RESPUBLICA_KAFKA_USERNAME",
        "RESPUBLICA_KAFKA_PASSWORD",
        "RESPUBLICA_KAFKA_SECURITY_PROTOCOL",
        "RESPUBLICA_KAFKA_SASL_MECHANISM",
        "RESPUBLICA_KAFKA_SSL_CAFILE",
    ):
        monkeypatch.delenv(name, raising=False)


def _config(tmp_path: Path, **values: str) -> Path:
    path = tmp_path / "client.yaml"
    path.write_text("".join(f"{k}: {v}\n" for k, v in values.items()))
    return path


def test_default_is_the_local_broker() -> None:
    assert KafkaSettings.load().bootstrap == "127.0.0.1:9092"


def test_the_local_brokers_admin_is_the_default_but_never_sent_elsewhere(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    clients = tmp_path / "cache" / "kafka-data" / "clients"
    clients.mkdir(parents=True)
    (clients / "admin.yaml").write_text(
        "bootstrap: 127.0.0.1:9092\nsecurity_protocol: SASL_SSL\nsasl_mechanism: SCRAM-SHA-512\n"
        f"username: admin\npassword: {SECRET}\n"
    )
    assert KafkaSettings.load().username == "admin"  # `respublica kafka start`, then any command
    assert KafkaSettings.load(bootstrap="kafka.example:9093").username is None
    monkeypatch.setenv("KAFKA_BOOTSTRAP", "kafka.example:9093")
    assert KafkaSettings.load().username is None
    monkeypatch.delenv("KAFKA_BOOTSTRAP")
    named = _config(tmp_path, bootstrap="other:1", username="bob", password=SECRET)
    monkeypatch.setenv("RESPUBLICA_KAFKA_CONFIG", str(named))
    assert KafkaSettings.load().username == "bob"  # the named file, not the local admin
    assert KafkaSettings.load().bootstrap == "other:1"


def test_from_file_ignores_the_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RESPUBLICA_KAFKA_USERNAME", "intruder")
    settings = KafkaSettings.from_file(_config(tmp_path, bootstrap="h:1"))
    assert settings.username is None and settings.bootstrap == "h:1"


def test_sources_in_order(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = _config(tmp_path, bootstrap="file:9092")
    assert KafkaSettings.load(config).bootstrap == "file:9092"
    monkeypatch.setenv("KAFKA_BOOTSTRAP", "legacy:9092")
    assert KafkaSettings.load(config).bootstrap == "legacy:9092"
    monkeypatch.setenv("RESPUBLICA_KAFKA_BOOTSTRAP", "env:9092")
    assert KafkaSettings.load(config).bootstrap == "env:9092"
    assert KafkaSettings.load(config, bootstrap="flag:9092").bootstrap == "flag:9092"


def test_scram_over_tls_renders_for_every_client(tmp_path: Path) -> None:
    ca = tmp_path / "ca.pem"
    ca.write_text("")
    config = _config(
        tmp_path,
        bootstrap="b:9093",
        security_protocol="SASL_SSL",
        sasl_mechanism="SCRAM-SHA-512",
        username="analyst",
        password=SECRET,
        ssl_cafile="ca.pem",
    )
    settings = KafkaSettings.load(config)
    assert settings.ssl_cafile == ca.resolve()  # relative to the config file
    kp = settings.kafka_python("audit")
    assert kp["bootstrap_servers"] == "b:9093"
    assert kp["client_id"] == "respublica-audit"
    assert kp["security_protocol"] == "SASL_SSL"
    assert kp["sasl_mechanism"] == "SCRAM-SHA-512"
    assert kp["sasl_plain_username"] == "analyst"
    assert kp["sasl_plain_password"] == SECRET
    assert kp["ssl_cafile"] == str(ca.resolve())
    env = settings.environ()
    assert env["RESPUBLICA_KAFKA_SECURITY_PROTOCOL"] == "SASL_SSL"
    assert env["RESPUBLICA_KAFKA_PASSWORD"] == SECRET


def test_tls_context_for_aiokafka_and_faust(tmp_path: Path) -> None:
    settings = KafkaSettings(bootstrap="b:9093", security_protocol="SSL", ssl_check_hostname=False)
    ak = settings.aiokafka("gateway")
    assert isinstance(ak["ssl_context"], ssl.SSLContext)
    assert ak["ssl_context"].check_hostname is False
    fa = settings.faust()
    assert fa["broker"] == "kafka://b:9093"
    assert fa["broker_credentials"] is not None


def test_plaintext_renders_no_security_keys() -> None:
    settings = KafkaSettings(bootstrap="a:1,b:2")
    assert settings.kafka_python("x") == {
        "bootstrap_servers": "a:1,b:2",
        "client_id": "respublica-x",
        "security_protocol": "PLAINTEXT",
        "reconnect_backoff_max_ms": 1000,
    }
    assert settings.faust() == {"broker": "kafka://a:1;kafka://b:2"}


def test_printing_masks_the_password() -> None:
    settings = KafkaSettings(
        security_protocol="SASL_PLAINTEXT", sasl_mechanism="PLAIN", username="u", password=SECRET
    )
    for text in (str(settings), repr(settings), settings.describe()):
        assert SECRET not in text


def test_errors_name_the_field_never_the_value(tmp_path: Path) -> None:
    config = _config(tmp_path, security_protocol=SECRET)
    with pytest.raises(KafkaSettingsError) as info:
        KafkaSettings.load(config)
    assert "security_protocol" in str(info.value)
    assert SECRET not in str(info.value)
    missing = _config(tmp_path, security_protocol="SASL_SSL", sasl_mechanism="SCRAM-SHA-512")
    with pytest.raises(KafkaSettingsError, match="needs username and password"):
        KafkaSettings.load(missing)


def test_unknown_setting_in_the_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(KafkaSettingsError, match="unknown setting.*bootstrap_servers"):
        KafkaSettings.load(_config(tmp_path, bootstrap_servers="x:1"))
    with pytest.raises(KafkaSettingsError, match="cannot read Kafka config"):
        KafkaSettings.load(tmp_path / "missing.yaml")


def test_every_client_is_built_through_the_settings() -> None:
    """No component names ``bootstrap_servers=`` (or a faust ``broker=``) on its own."""
    pattern = re.compile(r"bootstrap_servers\s*=|\bbroker\s*=\s*f?[\"']kafka://")
    offenders = []
    for root in ("broker", "connectors", "contracts", "policies"):
        for path in sorted((REPO / root).rglob("*.py")):
            if path == REPO / "broker" / "kafka" / "settings.py":
                continue
            for number, line in enumerate(path.read_text().splitlines(), 1):
                if pattern.search(line):
                    offenders.append(f"{path.relative_to(REPO)}:{number}")
    assert offenders == []


def test_kafka_python_clients_try_again_within_a_second_after_an_outage() -> None:
    # kafka-python's reconnect backoff doubles up to 30 s by default: after a 20 s outage the
    # worker's producers found the broker back up to half a minute late (the fault test).
    from kafka import KafkaConsumer, KafkaProducer
    from kafka.admin import KafkaAdminClient

    config = KafkaSettings(bootstrap="127.0.0.1:9092").kafka_python("worker")
    for client in (KafkaConsumer, KafkaProducer, KafkaAdminClient):
        assert client.DEFAULT_CONFIG["reconnect_backoff_max_ms"] > 1000  # what we override
    assert config["reconnect_backoff_max_ms"] <= 1000
