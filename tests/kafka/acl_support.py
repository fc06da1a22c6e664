"""Helpers of the ACL tests on the real broker: skip without an authorizer, clients as other
users, and cleanup of what ``apply`` created for a test's contracts."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable

import pytest
from aiokafka.conn import create_conn
from aiokafka.errors import SaslAuthenticationFailed
from pydantic import SecretStr

from broker.deadline import wait_for
from broker.kafka import acls
from broker.kafka.settings import KafkaSettings, as_settings

NO_AUTHORIZER = (
    "the session broker has no authorizer (describe_acls: SecurityDisabled); "
    "ACL tests need the secure broker (SASL_SSL, SCRAM, StandardAuthorizer)"
)


def require_authorizer(bootstrap: str) -> None:
    """Skip the test unless the broker lists ACLs."""
    with acls.AclAdmin(as_settings(bootstrap)) as admin:
        try:
            admin.bindings()
        except acls.NoAuthorizer:
            pytest.skip(NO_AUTHORIZER)


def require_scram(bootstrap: str) -> KafkaSettings:
    """The admin's settings; skip unless the session authenticates with SASL."""
    require_authorizer(bootstrap)
    settings = as_settings(bootstrap)
    if not settings.security_protocol.startswith("SASL"):
        pytest.skip("the session broker does not authenticate clients with SASL/SCRAM")
    return settings


def as_user(bootstrap: str, username: str, password: str) -> KafkaSettings:
    """The session's connection settings with another user's credentials."""
    return KafkaSettings.load(bootstrap=bootstrap).model_copy(
        update={"username": username, "password": SecretStr(password)}
    )


def authenticates(settings: KafkaSettings) -> bool:
    """Whether the broker accepts these credentials, by its answer to one SASL handshake.

    True once a connection authenticates; False when the broker answers with an
    authentication failure (immediately: kafka-python would instead retry the refused
    bootstrap until its 30 s timeout). Anything else (no answer, a lost connection) raises:
    silence is never taken for a refusal.
    """
    return asyncio.run(_authenticates(settings))


async def _authenticates(settings: KafkaSettings) -> bool:
    config = settings.aiokafka("tests")
    host, port = config.pop("bootstrap_servers").split(",")[0].strip().rsplit(":", 1)
    try:
        connection = await create_conn(host, int(port), request_timeout_ms=10_000, **config)
    except SaslAuthenticationFailed:
        return False
    connection.close()
    return True


def wait_until_authenticates(settings: KafkaSettings, timeout_s: float = 30.0) -> None:
    """SCRAM credentials reach the broker through its metadata log: wait for them."""
    wait_for(lambda: authenticates(settings), timeout_s, f"{settings.username} to authenticate")


def withdraw(bootstrap: str, contract_ids: Iterable[str]) -> None:
    """Remove what ``apply`` created for these contracts (others' grants stay)."""
    with acls.AclAdmin(as_settings(bootstrap)) as admin:
        try:
            acls.apply(admin, acls.withdrawal_plan(admin, list(contract_ids)))
        except acls.NoAuthorizer:
            return
