"""Shared fixtures: a real Kafka broker for the session, and factories for topics and clients.

The broker comes from ``KAFKA_BOOTSTRAP`` when set (with ``RESPUBLICA_KAFKA_*`` credentials if
it needs them); otherwise one is started from the cached Maven Central jars on a free port in a
temporary directory, secure as ``respublica kafka start`` makes it (TLS, SCRAM, authorizer),
and stopped at the end. The session then runs as the broker's admin: ``RESPUBLICA_KAFKA_CONFIG``
names the admin's client config, so ``KafkaSettings.load``/``as_settings(bootstrap)`` in the
tests and every ``respublica`` subprocess they start authenticate alike. ``kafka_settings``
gives the admin's settings; ``LOCAL_BROKER`` the broker, for tests that need its other users.
``kept_demo`` (``tests/kept_demo.py``) is one ``respublica demo --keep`` shared by the tests
that read a kept stack (the demo test, the docs test).
"""

from __future__ import annotations

import os
import threading
import uuid
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer
from kafka.admin import NewTopic
from kafka.errors import UnknownTopicOrPartitionError

from broker.kafka.local import LocalKafka, LocalKafkaConfig, free_port_pair
from broker.kafka.settings import CONFIG_ENV, KafkaSettings, as_settings

pytest_plugins = ["tests.kept_demo"]  # the session's one `respublica demo --keep`

LOCAL_BROKER: list[LocalKafka] = []  # the session's own broker, when it started one
CLOSE_BOUND_S = 30.0


def close_bounded(client: Any, bound_s: float = CLOSE_BOUND_S, **kwargs: Any) -> None:
    """``client.close(**kwargs)``, waiting at most ``bound_s``, then a warning naming the client.

    kafka-python 3's ``close`` joins the client's IO thread without a bound; once (in CI) a
    fixture's close outlived pytest-timeout's 600 s and took the whole run down with it. A test
    whose checks passed keeps its result; the hung close shows in the warnings summary.
    """
    closer = threading.Thread(target=client.close, kwargs=kwargs, daemon=True, name="close")
    closer.start()
    closer.join(bound_s)
    if closer.is_alive():
        warnings.warn(
            f"{type(client).__name__}.close() still running after {bound_s:.0f} s",
            stacklevel=2,
        )


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    # Tests that ask for the broker are integration tests; the rest are unit tests.
    for item in items:
        fixtures = getattr(item, "fixturenames", ())
        if "kafka_bootstrap" in fixtures or item.get_closest_marker("integration"):
            item.add_marker(pytest.mark.integration)
        elif not item.get_closest_marker("unit"):
            item.add_marker(pytest.mark.unit)


@pytest.fixture(scope="session")
def kafka_bootstrap(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    external = os.environ.get("KAFKA_BOOTSTRAP")
    if external:
        yield external
        return
    data_dir: Path = tmp_path_factory.mktemp("kafka")
    broker = LocalKafka(LocalKafkaConfig(port=free_port_pair(), data_dir=data_dir))
    _, status = broker.start()
    assert status.client_config is not None  # noqa: S101 - the test broker is secure
    before = os.environ.get(CONFIG_ENV)
    os.environ[CONFIG_ENV] = str(status.client_config)
    LOCAL_BROKER.append(broker)
    try:
        yield status.bootstrap
    finally:
        LOCAL_BROKER.clear()
        if before is None:
            os.environ.pop(CONFIG_ENV, None)
        else:
            os.environ[CONFIG_ENV] = before
        broker.stop()


@pytest.fixture(scope="session")
def kafka_settings(kafka_bootstrap: str) -> KafkaSettings:
    """The session's credentials (the local broker's admin) for ``kafka_bootstrap``."""
    return as_settings(kafka_bootstrap)


@pytest.fixture(scope="session")
def kafka_admin(kafka_bootstrap: str) -> Iterator[KafkaAdminClient]:
    admin = KafkaAdminClient(**as_settings(kafka_bootstrap).kafka_python("tests"))
    yield admin
    close_bounded(admin)


@pytest.fixture
def topic_factory(kafka_admin: KafkaAdminClient) -> Iterator[Callable[..., str]]:
    """Create uniquely named topics; they are deleted when the test ends."""
    created: list[str] = []

    def make(prefix: str = "test", partitions: int = 1, **configs: str) -> str:
        name = f"{prefix}.{uuid.uuid4().hex[:12]}"
        topic = NewTopic(name, partitions, 1, topic_configs=configs or {})
        kafka_admin.create_topics([topic])
        created.append(name)
        return name

    yield make
    if created:
        try:
            kafka_admin.delete_topics(created)
        except UnknownTopicOrPartitionError:
            pass


@pytest.fixture
def producer_factory(kafka_bootstrap: str) -> Iterator[Callable[..., KafkaProducer]]:
    producers: list[KafkaProducer] = []

    def make(**overrides: Any) -> KafkaProducer:
        settings: dict[str, Any] = {
            **as_settings(kafka_bootstrap).kafka_python("tests"),
            "acks": "all",
            "enable_idempotence": True,
            "linger_ms": 5,
        }
        settings.update(overrides)
        producer = KafkaProducer(**settings)
        producers.append(producer)
        return producer

    yield make
    for producer in producers:
        close_bounded(producer, timeout=10)


@pytest.fixture
def consumer_factory(kafka_bootstrap: str) -> Iterator[Callable[..., KafkaConsumer]]:
    consumers: list[KafkaConsumer] = []

    def make(*topics: str, **overrides: Any) -> KafkaConsumer:
        settings: dict[str, Any] = {
            **as_settings(kafka_bootstrap).kafka_python("tests"),
            "auto_offset_reset": "earliest",
            "enable_auto_commit": False,
            "group_id": f"test-{uuid.uuid4().hex[:8]}",
            "isolation_level": "read_committed",
        }
        settings.update(overrides)
        consumer = KafkaConsumer(*topics, **settings)
        consumers.append(consumer)
        return consumer

    yield make
    for consumer in consumers:
        close_bounded(consumer)
