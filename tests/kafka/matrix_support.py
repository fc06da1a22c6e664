"""Helpers of the authorization matrix test: one read or one write as one principal, and what
the broker answered, as one of ``ALLOW``, ``DENY``, ``REFUSED`` or a description of anything
else (which never matches an expectation).

How kafka-python 3.0.12 surfaces a deny (checked against the secure test broker):

- write, topic not even describable: ``send`` raises ``TopicAuthorizationFailedError`` (the
  producer's metadata lists the topic as unauthorized); describable but not writable: the
  produce future fails with ``TopicAuthorizationFailedError``. Idempotence is off, so a
  principal without any WRITE is not first stopped by InitProducerId's cluster check.
- read, describable but not readable: ``poll`` raises ``TopicAuthorizationFailedError``
  (the fetch's partition error). Not describable: a consumer without a group just returns
  nothing (the metadata error is only logged), so the read asks the broker explicitly first:
  the principal's ``describe_topics`` answers error code 29 (TOPIC_AUTHORIZATION_FAILED).
  READ implies DESCRIBE in Kafka, so a refused DESCRIBE is a refused READ. An empty poll is
  never taken for a deny: it is reported as such and fails the cell.
- an unauthenticated client (PLAINTEXT, or TLS without SASL, on the SASL_SSL listener): the
  broker drops every connection, and the client's bootstrap fails (``KafkaTimeoutError``
  "Unable to bootstrap" after ``bootstrap_timeout_ms``, or a ``KafkaConnectionError``).
"""

from __future__ import annotations

import time
from typing import Any

from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer, TopicPartition
from kafka.errors import (
    KafkaConnectionError,
    KafkaTimeoutError,
    TopicAuthorizationFailedError,
    for_code,
)

from broker.kafka.settings import KafkaSettings

ALLOW, DENY, REFUSED = "allow", "deny", "refused"
TIMEOUT_MS = 5000
BOOTSTRAP_MS = 3000
READ_S = 8.0


def _options(settings: KafkaSettings) -> dict[str, Any]:
    return {**settings.kafka_python("matrix"), "bootstrap_timeout_ms": BOOTSTRAP_MS}


def _unreachable(exc: Exception) -> str:
    """``REFUSED`` for a client that never got past connecting/authenticating."""
    if isinstance(exc, KafkaConnectionError):
        return REFUSED
    if isinstance(exc, KafkaTimeoutError) and "bootstrap" in str(exc).lower():
        return REFUSED
    return f"client failed to start: {type(exc).__name__}: {exc}"


def try_write(settings: KafkaSettings, topic: str, value: bytes) -> str:
    """Produce one keyed record to partition 0 of ``topic`` and wait for the broker's answer."""
    try:
        producer = KafkaProducer(
            **_options(settings),
            enable_idempotence=False,
            acks="all",
            retries=0,
            request_timeout_ms=TIMEOUT_MS,
            max_block_ms=TIMEOUT_MS,
        )
    except Exception as exc:  # noqa: BLE001 - every failure is reported, none is a pass
        return _unreachable(exc)
    try:
        producer.send(topic, key=b"matrix", value=value, partition=0).get(timeout=15)
    except TopicAuthorizationFailedError:
        return DENY
    except Exception as exc:  # noqa: BLE001
        return f"write failed otherwise: {type(exc).__name__}: {exc}"
    finally:
        producer.close(timeout=5)
    return ALLOW


def describe_error(settings: KafkaSettings, topic: str) -> str | None:
    """The broker's answer to this principal describing ``topic``: ``None`` if allowed,
    ``DENY`` for TOPIC_AUTHORIZATION_FAILED, ``REFUSED`` if the client cannot connect, else
    a description."""
    try:
        admin = KafkaAdminClient(**_options(settings), request_timeout_ms=TIMEOUT_MS)
    except Exception as exc:  # noqa: BLE001
        return _unreachable(exc)
    try:
        (described,) = admin.describe_topics([topic])
    except Exception as exc:  # noqa: BLE001
        return f"describe failed: {type(exc).__name__}: {exc}"
    finally:
        admin.close()
    code = int(described["error_code"])
    if code == 0:
        return None
    if for_code(code) is TopicAuthorizationFailedError:
        return DENY
    return f"describe answered {for_code(code).__name__}"


def try_read(settings: KafkaSettings, topic: str, expected: bytes) -> str:
    """Read partition 0 of ``topic`` from the beginning: ``ALLOW`` once the record whose value
    is ``expected`` arrives, ``DENY`` on an authorization error (see the module docstring)."""
    refused = describe_error(settings, topic)
    if refused is not None:
        return refused
    try:
        consumer = KafkaConsumer(
            **_options(settings), group_id=None, enable_auto_commit=False, fetch_max_wait_ms=100
        )
    except Exception as exc:  # noqa: BLE001
        return _unreachable(exc)
    partition = TopicPartition(topic, 0)
    try:
        consumer.assign([partition])
        consumer.seek_to_beginning(partition)
        deadline = time.monotonic() + READ_S
        while time.monotonic() < deadline:
            batches = consumer.poll(timeout_ms=500)
            if any(r.value == expected for r in batches.get(partition, [])):
                return ALLOW
    except TopicAuthorizationFailedError:
        return DENY
    except Exception as exc:  # noqa: BLE001
        return f"read failed otherwise: {type(exc).__name__}: {exc}"
    finally:
        consumer.close()
    return f"read neither returned the admin's record nor raised within {READ_S:.0f} s"


def end_offset(settings: KafkaSettings, topic: str) -> int:
    """The end offset of partition 0 of ``topic``, as these (admin) settings see it."""
    consumer = KafkaConsumer(**settings.kafka_python("matrix"), group_id=None)
    try:
        partition = TopicPartition(topic, 0)
        return int(consumer.end_offsets([partition], timeout_ms=10_000)[partition])
    finally:
        consumer.close()
