"""Which Kafka cluster a command talks to: ``--bootstrap``, else ``KAFKA_BOOTSTRAP``, else local."""

from __future__ import annotations

import os

from broker.kafka_local import DEFAULT_PORT

CONTRACTS_ENV = "RESPUBLICA_CONTRACTS"


def bootstrap_address(explicit: str | None = None) -> str:
    """The bootstrap servers to use, the local broker's default port last."""
    return explicit or os.environ.get("KAFKA_BOOTSTRAP") or f"127.0.0.1:{DEFAULT_PORT}"
