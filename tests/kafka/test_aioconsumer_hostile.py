"""The loops' aiokafka facade under a hostile review (``broker/kafka/aioconsumer.py``): a dead
event loop, a slow peer's rebalance, a revoke callback longer than the session timeout, and
record contents in logs. Each test failed before its fix (docs/architecture.md, "The loops'
consumer")."""

from __future__ import annotations

import logging
import threading
import time
import uuid
from typing import Any

import pytest
from kafka import TopicPartition
from kafka.structs import OffsetAndMetadata

import broker.kafka.aioconsumer as aioc
from broker.kafka.aioconsumer import AioConsumer
from broker.kafka.clients import WorkerClients, is_outage, subscribe
from broker.kafka.settings import as_settings
from broker.logs import quiet_client_logs

# No broker needed.


class _FakeAio:
    """Stands in for AIOKafkaConsumer: starts and stops at once."""

    def __init__(self, **_: Any) -> None:
        self._subscription = None

    async def start(self) -> None:
        return None

    async def stop(self) -> None:
        return None

    def pause(self, *_: Any) -> None:
        return None

    async def getmany(self, timeout_ms: int = 0, max_records: Any = None) -> dict:
        return {}


def _in_thread(fn: Any, limit_s: float) -> tuple[bool, Any]:
    box: list[Any] = []
    t = threading.Thread(target=lambda: box.append(_try(fn)), daemon=True)
    t.start()
    t.join(limit_s)
    return (not t.is_alive(), box[0] if box else None)


def _try(fn: Any) -> Any:
    try:
        return fn()
    except BaseException as exc:  # noqa: BLE001
        return exc


@pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning")  # the death
@pytest.mark.parametrize("call", ["pause", "poll", "close"])
def test_every_call_fails_fast_once_the_event_loop_thread_is_gone(
    monkeypatch: Any, call: str
) -> None:
    """The event loop's thread dies (a BaseException escapes a callback on it): every call
    fails fast with an outage (the loop starts over with a new consumer), close() returns;
    before, each waited for ever on the dead loop and /healthz said ok."""
    monkeypatch.setattr(aioc, "AIOKafkaConsumer", _FakeAio)
    consumer = AioConsumer({}, name="hostile")

    def die() -> None:
        raise SystemExit("event loop thread dies")

    consumer._loop.call_soon_threadsafe(die)
    consumer._thread.join(5)
    assert not consumer._thread.is_alive()  # the loop thread is gone ...
    fns = {
        "pause": lambda: consumer.pause(TopicPartition("t", 0)),
        "poll": lambda: consumer.poll(timeout_ms=100),
        "close": lambda: consumer.close(timeout_s=1),
    }
    returned, result = _in_thread(fns[call], 8)
    # ... and the call fails fast, as an outage (close returns), instead of blocking for ever.
    assert returned, f"{call}() still blocked after 8 s on a dead event loop"
    if call == "close":
        assert result is None
    else:
        assert isinstance(result, Exception) and is_outage(result), result


# With the test broker.


def _poll_until(consumer: AioConsumer, done: Any, timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    while not done():
        assert time.monotonic() < deadline
        consumer.poll(timeout_ms=200)


class _Slow:
    """A listener whose revoke takes ``revoke_s`` (a loop's lock, then a flush)."""

    def __init__(self, revoke_s: float = 0.0) -> None:
        self.revoke_s = revoke_s
        self.in_revoke = threading.Event()
        self.events: list[tuple[str, float, list[TopicPartition]]] = []

    def on_partitions_revoked(self, revoked: Any) -> None:
        if revoked and self.revoke_s:
            self.in_revoke.set()
            self.events.append(("revoke-start", time.monotonic(), sorted(revoked)))
            time.sleep(self.revoke_s)  # the slow callback under test, not a synchronisation
            self.events.append(("revoke-done", time.monotonic(), sorted(revoked)))

    def on_partitions_assigned(self, assigned: Any) -> None:
        self.events.append(("assigned", time.monotonic(), sorted(assigned)))


def _polling(consumer: AioConsumer, stop: threading.Event) -> threading.Thread:
    def run() -> None:
        while not stop.is_set():
            consumer.poll(timeout_ms=200)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


def test_poll_honours_its_timeout_while_a_peer_rebalances_slowly(
    kafka_bootstrap: str, topic_factory: Any
) -> None:
    """The loops rely on poll() returning to see stop(), checkpoint and refresh keys; aiokafka's
    getmany waits for a rebalance to end, so a peer's slow revoke callback froze every
    member's loop (and past CALL_TIMEOUT_S turned into an outage: a rebalance storm)."""
    topic = topic_factory("aioslow", partitions=2)
    group = f"hostile-{uuid.uuid4().hex[:8]}"
    clients = WorkerClients(as_settings(kafka_bootstrap), "tests", group)
    a, b, c = (clients.loop_consumer(group_id=group) for _ in range(3))
    slow = _Slow(15)
    stop = threading.Event()
    try:
        subscribe(a, [topic], _Slow())
        subscribe(b, [topic], slow)
        _polling(b, stop)
        _poll_until(a, lambda: len(a.assignment()) == 1 and len(b.assignment()) == 1, 90)
        subscribe(c, [topic], _Slow())  # a third member: a and b revoke, b for 15 s
        _polling(c, stop)
        assert slow.in_revoke.wait(30)
        started = time.monotonic()
        a.poll(timeout_ms=200)
        took = time.monotonic() - started
        assert took < 6, f"poll(timeout_ms=200) blocked {took:.1f} s through a peer's rebalance"
    finally:
        stop.set()
        for consumer in (a, b, c):
            consumer.close()


def test_revoke_runs_before_the_next_owner_is_assigned_even_past_the_session_timeout(
    kafka_bootstrap: str, topic_factory: Any
) -> None:
    """docs/architecture.md "Revoke before the next owner": the revoke callback waits for its
    loop's lock (held through a restore or a checkpoint) before it flushes. aiokafka's
    rebalance timeout defaulted to the session timeout (10 s): past it the broker gave the
    partitions to the next owner while the old one was still to write its checkpoint."""
    topic = topic_factory("aiorebto", partitions=2)
    group = f"hostile-{uuid.uuid4().hex[:8]}"
    clients = WorkerClients(as_settings(kafka_bootstrap), "tests", group)
    a, b = clients.loop_consumer(group_id=group), clients.loop_consumer(group_id=group)
    old, new = _Slow(14), _Slow()
    stop = threading.Event()
    try:
        subscribe(a, [topic], old)
        _poll_until(a, lambda: len(a.assignment()) == 2, 60)
        subscribe(b, [topic], new)
        polling = _polling(a, stop)
        _poll_until(b, lambda: any(e[0] == "assigned" and e[2] for e in new.events), 90)
    finally:
        stop.set()
        polling.join(70)
        a.close()
        b.close()
    done = next(e[1] for e in old.events if e[0] == "revoke-done")
    assigned = next(e[1] for e in new.events if e[0] == "assigned" and e[2])
    assert done < assigned, f"assigned {done - assigned:.1f} s before the revoke finished"


def test_no_record_key_or_value_in_any_log_line(
    kafka_bootstrap: str, topic_factory: Any, producer_factory: Any, caplog: Any
) -> None:
    secret_k, secret_v = b"VEH-SECRET-4242", b"RIDER-SECRET-777"
    topic = topic_factory("aiolog", partitions=1)
    p = producer_factory()
    for _ in range(20):
        p.send(topic, key=secret_k, value=secret_v)
    p.flush()
    caplog.set_level(logging.DEBUG)
    quiet_client_logs()  # what every long-running command does
    clients = WorkerClients(as_settings(kafka_bootstrap), "tests", "g")
    c = clients.loop_consumer(group_id=f"log-{uuid.uuid4().hex[:6]}")
    subscribe(c, [topic], _Slow())
    got = 0
    deadline = time.monotonic() + 60
    while got < 20 and time.monotonic() < deadline:
        got += sum(len(v) for v in c.poll(timeout_ms=200).values())
    tp = TopicPartition(topic, 0)
    c.commit_async({TopicPartition(topic, 7): OffsetAndMetadata(1, "", -1)})
    c.seek(tp, 0)
    c.close()
    assert got == 20
    text = "\n".join(
        r.getMessage() + (str(r.exc_info) if r.exc_info else "") for r in caplog.records
    )
    for s in (secret_k, secret_v):
        assert s.decode() not in text
