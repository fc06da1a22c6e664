"""SCRAM-SHA-512 users of the cluster, and the client config each one is handed.

``ScramUsers`` adds, rotates, removes and lists credentials through the admin API
(``alter_user_scram_credentials``; the broker stores only a salted hash). A new password is
random (``secrets.token_urlsafe(24)``) and goes nowhere but into the client config file
``write_client_config`` writes with mode 0600: never to stdout, a log line or an error.
"""

from __future__ import annotations

import contextlib
import os
import re
import secrets
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml
from kafka.admin import ScramMechanism, UserScramCredentialDeletion, UserScramCredentialUpsertion
from kafka.errors import KafkaError

from broker.kafka.admin import AdminSession
from broker.kafka.settings import KafkaSettings
from contracts.errors import RespublicaError

MECHANISM = ScramMechanism.SCRAM_SHA_512
ITERATIONS = 8192
USER_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
# A client of a secured cluster authenticates with SCRAM whatever the admin used.
_SASL_PROTOCOL = {
    "PLAINTEXT": "SASL_PLAINTEXT",
    "SSL": "SASL_SSL",
    "SASL_PLAINTEXT": "SASL_PLAINTEXT",
    "SASL_SSL": "SASL_SSL",
}


class UserAdminError(RespublicaError):
    """A SCRAM user could not be created, rotated, removed or listed (never names a secret)."""


def check_name(name: str) -> str:
    """A user name the broker and a principal (``User:<name>``) both accept."""
    if not USER_NAME.fullmatch(name):
        msg = (
            "a user name is 1-128 letters, digits, '.', '_' or '-', starting with a letter or digit"
        )
        raise UserAdminError(msg)
    return name


def new_password() -> str:
    """A random password (24 bytes of entropy, URL-safe text)."""
    return secrets.token_urlsafe(24)


class ScramUsers(AdminSession):
    """The admin calls for SCRAM credentials, with Kafka errors translated."""

    role = "users"
    error = UserAdminError

    def list(self) -> dict[str, list[str]]:
        """User name -> its SCRAM mechanisms, sorted."""
        try:
            described = self._admin.describe_user_scram_credentials()
        except KafkaError as exc:
            msg = f"listing SCRAM users failed: {type(exc).__name__}"
            raise UserAdminError(msg) from exc
        return {
            user: sorted(_mechanism(ci["mechanism"]) for ci in info["credential_infos"])
            for user, info in sorted(described.items())
        }

    def exists(self, name: str) -> bool:
        """Whether ``name`` has a SCRAM-SHA-512 credential."""
        return _mechanism(MECHANISM) in self.list().get(name, [])

    def upsert(self, name: str, password: str) -> None:
        """Set ``name``'s SCRAM-SHA-512 credential (the broker gets only the salted hash)."""
        upsert = UserScramCredentialUpsertion(
            check_name(name), MECHANISM, password, iterations=ITERATIONS
        )
        self._alter(name, upsert, "setting the credential")

    def remove(self, name: str) -> None:
        """Delete ``name``'s SCRAM-SHA-512 credential."""
        self._alter(name, UserScramCredentialDeletion(check_name(name), MECHANISM), "removal")

    def _alter(self, name: str, alteration: Any, what: str) -> None:
        try:
            result = self._admin.alter_user_scram_credentials([alteration])
        except KafkaError as exc:
            msg = f"{what} of user {name} failed: {type(exc).__name__}"
            raise UserAdminError(msg) from exc
        if result.get(name):
            msg = f"{what} of user {name} failed: {result[name]}"
            raise UserAdminError(msg)


def _mechanism(value: Any) -> str:
    return str(getattr(value, "name", value)).replace("_", "-")


def client_config(admin: KafkaSettings, name: str, password: str) -> dict[str, Any]:
    """The ``--kafka-config`` of user ``name``: the admin's address and TLS, SCRAM-SHA-512."""
    config: dict[str, Any] = {
        "bootstrap": admin.bootstrap,
        "security_protocol": _SASL_PROTOCOL[admin.security_protocol],
        "sasl_mechanism": _mechanism(MECHANISM),
        "username": name,
        "password": password,
    }
    if admin.ssl_cafile is not None:
        config["ssl_cafile"] = str(Path(admin.ssl_cafile).resolve())
    KafkaSettings(**config)  # the file must load; raises on a field that would not
    return config


def write_client_config(
    path: Path, config: dict[str, Any], then: Callable[[], None] | None = None
) -> Path:
    """Write ``config`` to ``path`` (mode 0600, atomically), after ``then()`` succeeded.

    The file is written to a temporary sibling first, so a directory that cannot be written
    fails before ``then`` changes a password nobody could then read; on any failure the
    temporary file is removed and ``path`` is left as it was.
    """
    path = path.resolve()
    temporary = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    text = yaml.safe_dump(config, sort_keys=False)
    try:
        descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except OSError as exc:
        msg = f"cannot write {path.parent} ({exc.strerror or type(exc).__name__})"
        raise UserAdminError(msg) from None
    try:
        with os.fdopen(descriptor, "w", encoding="utf-8") as out:
            out.write(text)
        if then is not None:
            then()
        os.replace(temporary, path)
        os.chmod(path, 0o600)
    finally:
        with contextlib.suppress(FileNotFoundError):
            temporary.unlink()
    return path
