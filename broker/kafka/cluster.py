"""Which Kafka cluster a command talks to: ``--bootstrap``, else ``KAFKA_BOOTSTRAP``, else local."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from broker.kafka.local import DEFAULT_PORT, LocalKafka, LocalKafkaConfig, free_port_pair

CONTRACTS_ENV = "RESPUBLICA_CONTRACTS"


def bootstrap_address(explicit: str | None = None) -> str:
    """The bootstrap servers to use, the local broker's default port last."""
    return explicit or os.environ.get("KAFKA_BOOTSTRAP") or f"127.0.0.1:{DEFAULT_PORT}"


@contextmanager
def job_cluster(prefix: str) -> Iterator[tuple[str, bool]]:
    """``(bootstrap, external)``: ``KAFKA_BOOTSTRAP``, or a throw-away local broker.

    The local broker runs on a free port in a temporary directory and is stopped (and its
    data removed) when the job ends, so a job never meets an earlier run's topics.
    """
    external = os.environ.get("KAFKA_BOOTSTRAP")
    if external:
        yield external, True
        return
    with tempfile.TemporaryDirectory(prefix=f"respublica-{prefix}-kafka-") as data:
        broker = LocalKafka(LocalKafkaConfig(port=free_port_pair(), data_dir=Path(data)))
        _, status = broker.start()
        try:
            yield status.bootstrap, False
        finally:
            broker.stop()
