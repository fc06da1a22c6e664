"""The gateway's producer heals and ``/healthz`` tells the truth, on the real broker.

Before: one record Kafka refused (a 2 MiB element of a JSON array reached the idempotent
producer) left it failing every later batch with 503 for minutes while ``/healthz`` said
ok. The raw topic here refuses records over 20,000 bytes, so a valid 60 KB event (under the
gateway's item cap) is refused by Kafka: the producer must be replaced, the next good
batch accepted within 5 s, and ``/healthz`` never ok in between.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from kafka import KafkaAdminClient
from kafka.admin import ConfigResource, ConfigResourceType

from broker.deadline import Deadline
from broker.ingest.auth import ProviderGrant, hash_token
from broker.ingest.producer import GatewayProducer
from broker.kafka import topics
from broker.kafka.writer import ProducerSettings
from contracts import Contract
from tests.hostile.conftest import event, headers, sized_event, until
from tests.ingest.conftest import ClientFactory

pytestmark = pytest.mark.integration
TOKEN = "tok-heal"  # noqa: S105 - a test token


@pytest.fixture
def live(
    kafka_admin: KafkaAdminClient, kafka_bootstrap: str, contract_copy: Callable[..., Contract]
) -> Iterator[Contract]:
    contract = contract_copy()
    with topics.TopicAdmin(kafka_bootstrap) as admin:
        topics.apply(admin, topics.plan(admin, [contract]))
    yield contract
    kafka_admin.delete_topics([s.name for s in topics.contract_topics(contract)])


def grants(contract: Contract) -> list[ProviderGrant]:
    return [ProviderGrant(id="p", token_sha256=hash_token(TOKEN), contracts=(contract.id,))]


async def gateway(
    gateway_client: ClientFactory, contract: Contract, bootstrap: str, **limits: Any
) -> Any:
    settings = ProducerSettings(bootstrap, ack_timeout_s=10.0, request_timeout_ms=5000)
    return await gateway_client(
        [contract], lambda: GatewayProducer(settings), grants=grants(contract), **limits
    )


async def good_batch_accepted(client: Any, url: str, first: int, timeout_s: float) -> int:
    """Post fresh good batches until one is accepted; ``/healthz`` must not be ok before."""
    deadline = Deadline(timeout_s)
    n = first
    while True:
        batch = b"\n".join(sized_event(n + i, 400) for i in range(20))
        response = await client.post(url, data=batch, headers=headers(TOKEN))
        if response.status == 200:
            assert (await response.json())["accepted"] == 20
            return n
        assert response.status == 503
        health = await client.get("/healthz")
        assert health.status == 503, "healthz said ok while writes failed"
        assert not deadline.expired(), "no good batch accepted within the deadline"
        n += 20


async def test_a_record_kafka_refuses_does_not_poison_later_batches(
    live: Contract, kafka_admin: KafkaAdminClient, kafka_bootstrap: str, gateway_client: Any
) -> None:
    raw = live.topic_raw("vehicle_events")
    limit = {"max.message.bytes": "20000", "cleanup.policy": "delete"}
    kafka_admin.alter_configs([ConfigResource(ConfigResourceType.TOPIC, raw, configs=limit)])

    def limited() -> bool:
        described = kafka_admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, raw)])
        return "max.message.bytes" in str(described)

    await until(limited, 10.0, "the raw topic's record limit")
    client = await gateway(gateway_client, live, kafka_bootstrap, probe_every_s=0.5)
    url = f"/v1/contracts/{live.id}/streams/vehicle_events/events"
    await until_ok(client)
    # Random padding: raw topics are compressed, and a run of "x" would shrink below 20,000.
    noise = json.dumps(event(1, trip_id=secrets.token_hex(30_000))).encode()
    bad = b"\n".join([sized_event(0, 400), noise])
    response = await client.post(url, data=bad, headers=headers(TOKEN))
    assert response.status == 503, await response.text()
    health = await client.get("/healthz")
    assert health.status == 503
    assert (await health.json())["reason"] == "KAFKA_WRITE_FAILED"
    await good_batch_accepted(client, url, first=100, timeout_s=5.0)
    await until_ok(client)


async def test_oversized_lines_and_elements_then_good_batches_within_5_s(
    live: Contract, kafka_bootstrap: str, gateway_client: Any
) -> None:
    client = await gateway(gateway_client, live, kafka_bootstrap)
    url = f"/v1/contracts/{live.id}/streams/vehicle_events/events"
    huge = json.dumps(event(0, trip_id="x" * 2 * 1024 * 1024)).encode()
    response = await client.post(
        url, data=huge + b"\n" + sized_event(1, 400), headers=headers(TOKEN)
    )
    answer = await response.json()
    assert response.status == 200 and answer["accepted"] == 1
    assert answer["rejected"][0]["reason"] == "PAYLOAD_TOO_LARGE"
    await good_batch_accepted(client, url, first=100, timeout_s=5.0)
    array = b"[" + huge.replace(b'"evt-00000000"', b'"evt-00000009"') + b"]"
    response = await client.post(url, data=array, headers=headers(TOKEN, "application/json"))
    assert response.status == 200
    assert (await response.json())["rejected"][0]["reason"] == "PAYLOAD_TOO_LARGE"
    await good_batch_accepted(client, url, first=200, timeout_s=5.0)
    health = await client.get("/healthz")
    assert (health.status, (await health.json())["status"]) == (200, "ok")


async def test_healthz_is_degraded_while_kafka_is_unreachable(
    gateway_client: Any, examples: Any
) -> None:
    contract = examples["lyon-micromobility"]
    settings = ProducerSettings("127.0.0.1:1", ack_timeout_s=1.0, request_timeout_ms=1000)
    client = await gateway_client(
        [contract], lambda: GatewayProducer(settings), grants=grants(contract), probe_every_s=0.2
    )
    seen: list[dict[str, Any]] = []

    async def probe() -> bool:
        response = await client.get("/healthz")
        seen.append({**(await response.json()), "http": response.status})
        return len(seen) >= 5 and seen[-1]["reason"] == "KAFKA_UNREACHABLE"

    deadline = Deadline(10.0)
    while not await probe():
        assert not deadline.expired(), seen[-1]
    assert {s["http"] for s in seen} == {503}
    assert {s["status"] for s in seen} == {"degraded"}


async def until_ok(client: Any) -> None:
    """Wait (bounded) until ``/healthz`` answers 200."""
    statuses: list[int] = []

    async def check() -> None:
        statuses.append((await client.get("/healthz")).status)

    deadline = Deadline(15.0)
    while True:
        await check()
        if statuses[-1] == 200:
            return
        assert not deadline.expired(), f"healthz never ok: {statuses[-5:]}"
        await until(lambda: True, 0.1, "a pause")
