"""Where and as whom every respublica component talks to Kafka: one ``KafkaSettings``.

Every client in the code (kafka-python consumers, producers and admin clients, aiokafka
producers, the faust app) is built from the keyword arguments this object renders, so a
cluster that needs TLS or SASL/SCRAM is reached by every command alike.

Sources, highest first: an explicit ``--bootstrap``; ``RESPUBLICA_KAFKA_*`` environment
variables (``RESPUBLICA_KAFKA_BOOTSTRAP``, ``..._SECURITY_PROTOCOL``, ``..._SASL_MECHANISM``,
``..._USERNAME``, ``..._PASSWORD``, ``..._SSL_CAFILE``, ``..._SSL_CERTFILE``,
``..._SSL_KEYFILE``, ``..._SSL_CHECK_HOSTNAME``, ``..._CLIENT_ID_PREFIX``); ``KAFKA_BOOTSTRAP``
(kept for the test suite and existing scripts); the ``--kafka-config FILE`` (YAML with the
same field names, relative paths resolved against the file), else the file named by
``RESPUBLICA_KAFKA_CONFIG``; else, when no source names a bootstrap at all, the local broker
of ``respublica kafka start`` as its admin (``<data dir>/clients/admin.yaml``, when that file
exists: never sent to a cluster named elsewhere); else the local broker's address.
Printing the settings masks the password (``SecretStr``).
"""

from __future__ import annotations

import os
import ssl
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import SecretStr, ValidationError, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from broker.kafka.defaults import DEFAULT_PORT, default_data_dir
from contracts.errors import RespublicaError

LEGACY_BOOTSTRAP_ENV = "KAFKA_BOOTSTRAP"
ENV_PREFIX = "RESPUBLICA_KAFKA_"
CONFIG_ENV = "RESPUBLICA_KAFKA_CONFIG"
_PATH_FIELDS = ("ssl_cafile", "ssl_certfile", "ssl_keyfile")
RECONNECT_BACKOFF_MAX_MS = 1000
"""The longest wait between two reconnection attempts of a kafka-python client."""

SecurityProtocol = Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"]
SaslMechanism = Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"]


class KafkaSettingsError(RespublicaError):
    """The Kafka connection settings are invalid (names the field, never a secret)."""


class KafkaSettings(BaseSettings):
    """Connection settings shared by every Kafka client respublica builds."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX, frozen=True, extra="forbid", hide_input_in_errors=True
    )

    bootstrap: str = f"127.0.0.1:{DEFAULT_PORT}"
    security_protocol: SecurityProtocol = "PLAINTEXT"
    sasl_mechanism: SaslMechanism | None = None
    username: str | None = None
    password: SecretStr | None = None
    ssl_cafile: Path | None = None
    ssl_certfile: Path | None = None
    ssl_keyfile: Path | None = None
    ssl_check_hostname: bool = True
    client_id_prefix: str = "respublica"

    @model_validator(mode="after")
    def _consistent(self) -> KafkaSettings:
        if self.security_protocol.startswith("SASL"):
            if self.sasl_mechanism is None:
                msg = f"security_protocol {self.security_protocol} needs sasl_mechanism"
                raise ValueError(msg)
            if not self.username or self.password is None:
                msg = f"security_protocol {self.security_protocol} needs username and password"
                raise ValueError(msg)
        return self

    # --- loading -------------------------------------------------------------------------

    @classmethod
    def load(
        cls, config_file: Path | str | None = None, *, bootstrap: str | None = None
    ) -> KafkaSettings:
        """Merge the sources (see the module docstring); raise ``KafkaSettingsError``."""
        config_file = config_file or os.environ.get(CONFIG_ENV) or None
        if config_file is None and not (bootstrap or configured_elsewhere()):
            local_admin = default_data_dir() / "clients" / "admin.yaml"
            config_file = local_admin if local_admin.exists() else None
        values: dict[str, Any] = _read_file(Path(config_file)) if config_file else {}
        legacy = os.environ.get(LEGACY_BOOTSTRAP_ENV)
        if legacy:
            values["bootstrap"] = legacy
        for name in cls.model_fields:
            raw = os.environ.get(ENV_PREFIX + name.upper())
            if raw:
                values[name] = raw
        if bootstrap:
            values["bootstrap"] = bootstrap
        try:
            return cls(**values)
        except ValidationError as exc:
            raise KafkaSettingsError(_describe_errors(exc)) from None

    @classmethod
    def from_file(cls, config_file: Path) -> KafkaSettings:
        """The settings of one ``--kafka-config`` file alone (no environment, no defaults
        from elsewhere): how the local broker hands out its users' credentials."""
        values: dict[str, Any] = {name: f.default for name, f in cls.model_fields.items()}
        values.update(_read_file(Path(config_file)))  # every field given: the environment is moot
        try:
            return cls(**values)
        except ValidationError as exc:
            raise KafkaSettingsError(_describe_errors(exc)) from None

    # --- rendering -----------------------------------------------------------------------

    def client_id(self, role: str) -> str:
        """``<prefix>-<role>``: how the broker's logs and quotas see this client."""
        return f"{self.client_id_prefix}-{role}"

    def kafka_python(self, role: str) -> dict[str, Any]:
        """Keyword arguments for kafka-python's consumer, producer and admin client."""
        config: dict[str, Any] = {
            "bootstrap_servers": self.bootstrap,
            "client_id": self.client_id(role),
            "security_protocol": self.security_protocol,
            # kafka-python doubles its reconnect backoff up to 30 s by default: after a
            # 20 s outage a client waited up to half a minute more before it tried again.
            "reconnect_backoff_max_ms": RECONNECT_BACKOFF_MAX_MS,
        }
        config.update(self._sasl())
        if self.tls:
            config["ssl_check_hostname"] = self.ssl_check_hostname
            for name in _PATH_FIELDS:
                value = getattr(self, name)
                if value is not None:
                    config[name] = str(value)
        return config

    def aiokafka(self, role: str) -> dict[str, Any]:
        """Keyword arguments for aiokafka's clients (TLS as an ``ssl.SSLContext``)."""
        config: dict[str, Any] = {
            "bootstrap_servers": self.bootstrap,
            "client_id": self.client_id(role),
            "security_protocol": self.security_protocol,
        }
        config.update(self._sasl())
        if self.tls:
            config["ssl_context"] = self.ssl_context()
        return config

    def faust(self) -> dict[str, Any]:
        """``broker`` and ``broker_credentials`` for ``faust.App``."""
        import faust  # noqa: PLC0415 - faust is heavy; only the worker needs it

        hosts = ";".join(f"kafka://{host.strip()}" for host in self.bootstrap.split(","))
        config: dict[str, Any] = {"broker": hosts}
        if self.security_protocol.startswith("SASL"):
            assert self.password is not None  # noqa: S101 - checked by _consistent
            config["broker_credentials"] = faust.SASLCredentials(
                username=self.username,
                password=self.password.get_secret_value(),
                mechanism=self.sasl_mechanism,
                ssl_context=self.ssl_context() if self.tls else None,
            )
        elif self.tls:
            config["broker_credentials"] = faust.SSLCredentials(self.ssl_context())
        return config

    @property
    def tls(self) -> bool:
        """Whether the connection is encrypted."""
        return self.security_protocol in ("SSL", "SASL_SSL")

    def ssl_context(self) -> ssl.SSLContext:
        """A TLS context trusting ``ssl_cafile`` (else the system store)."""
        context = ssl.create_default_context(
            cafile=str(self.ssl_cafile) if self.ssl_cafile else None
        )
        context.check_hostname = self.ssl_check_hostname
        if self.ssl_certfile:
            context.load_cert_chain(
                str(self.ssl_certfile), str(self.ssl_keyfile) if self.ssl_keyfile else None
            )
        return context

    def environ(self) -> dict[str, str]:
        """``RESPUBLICA_KAFKA_*`` variables that give a child process these settings."""
        out: dict[str, str] = {}
        for name in self.model_fields_set | {"bootstrap"}:
            value = getattr(self, name)
            if value is None:
                continue
            text = value.get_secret_value() if isinstance(value, SecretStr) else str(value)
            out[ENV_PREFIX + name.upper()] = text
        return out

    def describe(self) -> str:
        """One line for logs and ``--help`` output; never the password."""
        who = f" as {self.username} ({self.sasl_mechanism})" if self.username else ""
        return f"{self.bootstrap} over {self.security_protocol}{who}"

    def _sasl(self) -> dict[str, Any]:
        if not self.security_protocol.startswith("SASL"):
            return {}
        assert self.password is not None  # noqa: S101 - checked by _consistent
        return {
            "sasl_mechanism": self.sasl_mechanism,
            "sasl_plain_username": self.username,
            "sasl_plain_password": self.password.get_secret_value(),
        }


def _describe_errors(exc: ValidationError) -> str:
    parts = []
    for error in exc.errors(include_input=False, include_url=False):
        where = ".".join(str(p) for p in error["loc"]) or "settings"
        parts.append(f"{where}: {error['msg']}")
    return "invalid Kafka settings: " + "; ".join(parts)


def _read_file(path: Path) -> dict[str, Any]:
    """A ``--kafka-config`` file: a YAML mapping of the settings' fields."""
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        msg = f"cannot read Kafka config {path} ({exc.strerror or type(exc).__name__})"
        raise KafkaSettingsError(msg) from None
    except yaml.YAMLError:
        msg = f"Kafka config {path} is not valid YAML"
        raise KafkaSettingsError(msg) from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        msg = f"Kafka config {path} must be a mapping of settings"
        raise KafkaSettingsError(msg)
    unknown = sorted(str(k) for k in data if k not in KafkaSettings.model_fields)
    if unknown:
        msg = (
            f"Kafka config {path}: unknown setting(s) {', '.join(unknown)}; "
            f"known: {', '.join(KafkaSettings.model_fields)}"
        )
        raise KafkaSettingsError(msg)
    for name in _PATH_FIELDS:
        if data.get(name):
            data[name] = (path.parent / str(data[name])).resolve()
    return dict(data)


def configured_elsewhere() -> bool:
    """Whether the environment names a cluster (else a job may start its own local broker)."""
    return any(
        os.environ.get(v) for v in (LEGACY_BOOTSTRAP_ENV, ENV_PREFIX + "BOOTSTRAP", CONFIG_ENV)
    )


def as_settings(kafka: KafkaSettings | str) -> KafkaSettings:
    """Settings as they are, or a bare bootstrap address with the environment's credentials."""
    return kafka if isinstance(kafka, KafkaSettings) else KafkaSettings.load(bootstrap=kafka)
