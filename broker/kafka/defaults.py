"""Names and defaults the command line shows before it loads anything heavy.

The one place for them: ``broker.kafka.local`` and ``broker.kafka.settings`` import these,
and so does ``respublica --help`` (which must not import pydantic or a Kafka client).
"""

from __future__ import annotations

import os
from pathlib import Path

DEFAULT_PORT = 9092
"""The local broker's port (``respublica kafka start``), hence the default bootstrap."""
KAFKA_VERSION = "4.1.1"
"""The Kafka release the local broker runs (its jars come from Maven Central)."""
CONTRACTS_ENV = "RESPUBLICA_CONTRACTS"
"""Contract files or directories (``:``-separated) for every command."""
CACHE_ENV = "RESPUBLICA_CACHE"
WORKER_GROUP = "respublica"
"""The workers' group stem: the workers of contract ``<c>`` form ``<stem>.<c>.raw`` and
``<stem>.<c>.merge``, and no other contract's workers join them (``worker_group_prefix``)."""
VALIDATOR_GROUP = "respublica-validator"
"""The ingest validator's consumer group (``respublica validator --group``)."""


def worker_group_prefix(contract_id: str, stem: str = WORKER_GROUP) -> str:
    """``<stem>.<c>.``: what the groups of contract ``<c>``'s workers start with.

    Contracts are the isolation unit (BRIEF §6): a group leader assigns every member's
    partitions and every join rebalances every member, so the workers of two contracts never
    share a group. With the default stem this is the worker's ACL prefix on groups.
    """
    return f"{stem}.{contract_id}."


WORKER_STAGES = ("raw", "merge")
"""The worker's two stages, one consumer group each per contract."""


def worker_group(contract_id: str, stage: str, stem: str = WORKER_GROUP) -> str:
    """The consumer group of ``stage`` (``raw`` or ``merge``) of contract ``<c>``'s workers."""
    return f"{worker_group_prefix(contract_id, stem)}{stage}"


def cache_root() -> Path:
    """Where downloaded jars live: ``$RESPUBLICA_CACHE`` or ``~/.cache/respublica``."""
    env = os.environ.get(CACHE_ENV)
    return Path(env) if env else Path.home() / ".cache" / "respublica"


def default_data_dir() -> Path:
    """The broker's state (storage, pid file, logs) when ``--data-dir`` is not given."""
    return cache_root() / "kafka-data"
