"""Which views the web server may show: those the broker lets its principal see.

The server authenticates to Kafka as one principal (an analyst, the open-data team, the
auditor). The broker answers a metadata request with the topics that principal may *describe*,
and ``respublica apply`` grants a consumer READ and DESCRIBE on its views' ``public.<c>.<v>``
only. So the views shown are the contracts' views whose public topic the broker lists for this
principal: the broker decides, not the contract file the server was given (a contract naming
a principal the broker does not grant shows nothing). Reading is enforced by the broker again
on every fetch.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from kafka import KafkaConsumer
from kafka.errors import KafkaError

from broker.kafka.settings import KafkaSettings
from contracts.errors import RespublicaError
from contracts.model import Contract, View


class AccessError(RespublicaError):
    """The broker could not be asked what this principal may see."""


@dataclass(frozen=True)
class ViewRef:
    """One contract view the principal may read."""

    contract: Contract
    view: View

    @property
    def topic(self) -> str:
        """``public.<c>.<v>``."""
        return self.contract.topic_public(self.view)


def visible_topics(kafka: KafkaSettings, timeout_ms: int = 15_000) -> set[str]:
    """The topics the broker lists for this principal (those it may describe)."""
    try:
        consumer = KafkaConsumer(
            **kafka.kafka_python("web"),
            group_id=None,
            enable_auto_commit=False,
            request_timeout_ms=timeout_ms,
        )
    except KafkaError as exc:
        msg = f"cannot reach Kafka at {kafka.bootstrap} ({type(exc).__name__})"
        raise AccessError(msg) from exc
    try:
        return set(consumer.topics())
    except KafkaError as exc:
        msg = f"cannot list the topics at {kafka.bootstrap} ({type(exc).__name__})"
        raise AccessError(msg) from exc
    finally:
        consumer.close()


def readable_views(contracts: Iterable[Contract], topics: set[str]) -> list[ViewRef]:
    """The views of ``contracts`` whose public topic is in ``topics``, in contract order."""
    return [
        ViewRef(contract, view)
        for contract in contracts
        for view in contract.views
        if contract.topic_public(view) in topics
    ]
