"""One oversized field or one refusal by Kafka must not wedge a pull connector forever.

Before: ``validate_json`` skipped the size cap for a parsed record, so an item with a 2 MB
``provider_id`` was accepted as ~2 MB of Avro; Kafka refused it (MessageSizeTooLargeError)
and the Outbox sent the same batch again, for ever. Refused credentials or ACLs were waited
out the same way. Now the record is rejected PAYLOAD_TOO_LARGE at its largest field (DLQ,
no raw value), and a refusal no wait can heal stops the Outbox with a clear error, which
``respublica connect`` turns into exit 1.
"""

from __future__ import annotations

import asyncio
import os
import sys
import time
from collections.abc import AsyncIterator, Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from aiokafka import errors as kafka_errors
from kafka import KafkaAdminClient

from broker.kafka import topics
from broker.kafka.reasons import Reason
from broker.kafka.serde import Schemas
from broker.kafka.writer import KafkaUnavailable, OutRecord
from connectors.base import Accepted, Rejected
from connectors.outbox import Outbox, UndeliverableBatch
from connectors.validate import (
    DLQ_MAX_VALUE_BYTES,
    H_FIELD,
    H_REASON,
    Router,
    StreamValidator,
)
from contracts import Contract
from tests.conftest import LOCAL_BROKER
from tests.connectors.conftest import NOW_MS, vehicle_event
from tests.connectors.test_gbfs_pull import System, real_contract
from tests.ingest.conftest import FakeClock, MemoryWriter

HUGE = "p" * 2_000_000


def test_a_parsed_record_with_a_huge_field_is_too_large_at_that_field(
    mobility: Contract, schemas: Schemas
) -> None:
    validator = StreamValidator(mobility, "vehicle_events", schemas=schemas)
    outcome = validator.validate_json(
        vehicle_event(1, provider_id=HUGE), now_ms=NOW_MS, connector="mds", source="t"
    )
    assert outcome == Rejected(Reason.PAYLOAD_TOO_LARGE, "provider_id", outcome.stage)
    # Checked before the duplicate filter: the provider's fixed record is not a duplicate.
    again = validator.validate_json(vehicle_event(1), now_ms=NOW_MS, connector="mds", source="t")
    assert isinstance(again, Accepted)
    assert len(again.value) <= validator.max_bytes


def test_the_cap_is_on_the_avro_value_exactly(mobility: Contract, schemas: Schemas) -> None:
    record = vehicle_event(2)
    size = len(StreamValidator(mobility, "vehicle_events", schemas=schemas)._encode(record))
    for cap, accepted in ((size, True), (size - 1, False)):
        validator = StreamValidator(mobility, "vehicle_events", schemas=schemas, max_bytes=cap)
        outcome = validator.validate_json(record, now_ms=NOW_MS, connector="t", source="t")
        assert isinstance(outcome, Accepted) is accepted


async def test_the_outbox_sends_the_huge_record_to_the_dlq_and_goes_on(
    mobility: Contract,
) -> None:
    writer = MemoryWriter()
    outbox = Outbox(
        Router([mobility]), mobility.id, writer=lambda: writer, connector="mds", clock=FakeClock()
    )
    outbox.emit("vehicle_events", vehicle_event(1, provider_id=HUGE), "mds:events:page=1#0")
    outbox.emit("vehicle_events", vehicle_event(2), "mds:events:page=1#1")
    await asyncio.wait_for(outbox.deliver(), 5)
    assert len(writer.topic(mobility.topic_raw("vehicle_events"))) == 1
    [dead] = writer.topic(mobility.topic_dlq("vehicle_events"))
    headers = dict(dead.headers)
    assert (headers[H_REASON], headers[H_FIELD]) == (b"PAYLOAD_TOO_LARGE", b"provider_id")
    assert len(dead.value) <= DLQ_MAX_VALUE_BYTES
    assert all(HUGE[:64].encode() not in value for _, value in dead.headers)


class RefusingWriter:
    """A ``BatchWriter`` that fails as ``KafkaBatchWriter`` does on an aiokafka error, the
    first ``refusals`` times (then it takes the batch: a retry loop ends, never hangs)."""

    def __init__(self, cause: Exception, refusals: int = 3) -> None:
        self.cause = cause
        self.refusals = refusals
        self.writes = 0
        self.connected = True

    async def write(self, records: Sequence[OutRecord]) -> None:
        self.writes += 1
        if self.writes <= self.refusals:
            raise KafkaUnavailable(type(self.cause).__name__) from self.cause

    async def close(self) -> None:
        """Nothing to release."""


def outbox_on(writer: RefusingWriter, contract: Contract, clock: FakeClock) -> Outbox:
    outbox = Outbox(
        Router([contract]), contract.id, writer=lambda: writer, connector="mds", clock=clock
    )
    outbox.emit("vehicle_events", vehicle_event(1), "t")
    return outbox


@pytest.mark.parametrize(
    ("cause", "says"),
    [
        (kafka_errors.MessageSizeTooLargeError(), "too large"),
        (kafka_errors.TopicAuthorizationFailedError(), "does not let this principal write"),
        (kafka_errors.ClusterAuthorizationFailedError(), "does not let this principal write"),
        (kafka_errors.SaslAuthenticationFailed(), "refused the connector's credentials"),
    ],
)
async def test_a_refusal_no_wait_can_heal_stops_the_outbox_at_once(
    mobility: Contract, cause: Exception, says: str
) -> None:
    writer, clock = RefusingWriter(cause), FakeClock()
    outbox = outbox_on(writer, mobility, clock)
    with pytest.raises(UndeliverableBatch, match=says) as raised:
        await outbox.deliver()
    assert writer.writes == 1 and clock.slept == []  # no retry
    assert type(cause).__name__ in str(raised.value)


async def test_an_outage_is_still_waited_out(mobility: Contract) -> None:
    writer, clock = RefusingWriter(kafka_errors.KafkaTimeoutError(), refusals=5), FakeClock()
    outbox = outbox_on(writer, mobility, clock)
    await outbox.deliver()
    assert writer.writes == 6 and len(clock.slept) == 5
    assert outbox.delivered == 1


# --------------------------------------------------------------- on the real broker, by CLI


@pytest.fixture
async def gbfs_system() -> AsyncIterator[System]:
    system = System(lambda: int(datetime.now(UTC).timestamp() * 1000))
    app = web.Application()
    for path, handler in system.routes().items():
        app.router.add_get(path, handler)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    system.base = str(server.make_url("")).rstrip("/")
    yield system
    await server.close()


@pytest.fixture
def applied(
    kafka_bootstrap: str, kafka_admin: KafkaAdminClient, tmp_path: Path
) -> Iterator[Contract]:
    contract = real_contract(tmp_path)
    with topics.TopicAdmin(kafka_bootstrap) as admin:
        topics.apply(admin, topics.plan(admin, [contract]))
    yield contract
    names = {spec.name for spec in topics.contract_topics(contract)}
    kafka_admin.delete_topics(sorted(names & set(kafka_admin.list_topics())))


async def connect_gbfs(
    system: System, contract: Contract, bootstrap: str, env: dict[str, str]
) -> tuple[int | None, str]:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        *("-m", "broker.cli", "connect", "gbfs", f"{system.base}/gbfs"),
        *("--contract", contract.id, "--contracts", str(contract.source), "--provider-id", "p"),
        *("--bootstrap", bootstrap, "--polls", "1"),
        stderr=asyncio.subprocess.PIPE,
        env={**os.environ, **env},
    )
    try:
        _, err = await asyncio.wait_for(process.communicate(), 90)
    except TimeoutError:
        process.kill()
        await process.wait()
        pytest.fail("connect gbfs kept retrying a refusal that cannot heal")
    return process.returncode, err.decode()


@pytest.mark.integration
@pytest.mark.parametrize(
    ("who", "says"),
    [
        ("respublica-auditor", "does not let this principal write"),
        ("wrong-password", "refused the connector's credentials"),
    ],
)
async def test_connect_exits_1_when_kafka_refuses_the_principal(
    applied: Contract, kafka_bootstrap: str, gbfs_system: System, who: str, says: str
) -> None:
    if not LOCAL_BROKER:
        pytest.skip("needs the session's own broker and its users")
    broker = LOCAL_BROKER[0]
    if who == "wrong-password":
        env = {"RESPUBLICA_KAFKA_PASSWORD": "not-the-password"}
    else:
        env = {"RESPUBLICA_KAFKA_CONFIG": str(broker.config.client_config(who))}
    started = time.monotonic()
    code, err = await connect_gbfs(gbfs_system, applied, kafka_bootstrap, env)
    assert code == 1, err
    assert says in err
    assert "not-the-password" not in err
    print(f"\n{who}: exit 1 after {time.monotonic() - started:.1f} s")
