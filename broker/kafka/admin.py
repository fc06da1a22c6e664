"""One admin client per command: ``AdminSession``, the base of the topic, ACL and user admins."""

from __future__ import annotations

from typing import Self

from kafka import KafkaAdminClient
from kafka.errors import KafkaError

from broker.kafka.settings import KafkaSettings, as_settings
from contracts.errors import RespublicaError


class AdminSession:
    """A ``KafkaAdminClient`` under the command's settings, closed on exit.

    Subclasses name their client (``role``) and the error a failure to connect raises
    (``error``); the message names the cluster and the exception type, never a secret.
    """

    role = "admin"
    error: type[RespublicaError] = RespublicaError

    def __init__(self, kafka: KafkaSettings | str) -> None:
        self.kafka = settings = as_settings(kafka)
        try:
            self._admin = KafkaAdminClient(
                **settings.kafka_python(self.role),
                request_timeout_ms=15000,
                bootstrap_timeout_ms=10000,
            )
        except (KafkaError, OSError) as exc:
            msg = f"cannot reach the Kafka cluster at {settings.bootstrap} ({type(exc).__name__})"
            raise self.error(msg) from exc

    def close(self) -> None:
        self._admin.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
