"""The worker loops' consumer on aiokafka (``broker/kafka/aioconsumer.py``), on the real broker:
records and partitions as kafka-python's, seek/pause/resume, positions and end offsets, the
rebalance callbacks (off the event loop, revoke before the next owner's assign, facade calls
from inside them), close during a rebalance, and an unreachable cluster judged an outage."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from kafka import TopicPartition

from broker.deadline import wait_for
from broker.kafka.aioconsumer import AioConsumer
from broker.kafka.clients import WorkerClients, is_outage, subscribe
from broker.kafka.local import free_port
from broker.kafka.settings import KafkaSettings, as_settings

PARTITIONS = 2
PER_PARTITION = 50


@pytest.fixture
def loop_consumers(kafka_bootstrap: str) -> Iterator[Callable[..., AioConsumer]]:
    """Build facades as the worker does (``WorkerClients.loop_consumer``); closed at the end."""
    made: list[AioConsumer] = []
    group = f"test-aio-{uuid.uuid4().hex[:8]}"

    def make(**overrides: Any) -> AioConsumer:
        clients = WorkerClients(as_settings(kafka_bootstrap), "tests", group)
        consumer = clients.loop_consumer(group_id=group, **overrides)
        assert isinstance(consumer, AioConsumer)
        made.append(consumer)
        return consumer

    yield make
    for consumer in made:
        consumer.close()


@pytest.fixture
def filled_topic(topic_factory: Any, producer_factory: Any) -> str:
    topic = topic_factory("aio", partitions=PARTITIONS)
    producer = producer_factory()
    for p in range(PARTITIONS):
        for i in range(PER_PARTITION):
            producer.send(
                topic, key=b"k%d" % i, value=b"%d|%d" % (p, i), partition=p, headers=[("h", b"v")]
            )
    producer.flush()
    return topic


class Recorder:
    """A kafka-python-style listener that logs its calls and can run a hook inside them."""

    def __init__(self, name: str, log: list[tuple[str, str, list[TopicPartition]]]) -> None:
        self.name, self.log = name, log
        self.threads: set[str] = set()
        self.on_assign: Callable[[list[TopicPartition]], None] | None = None
        self.on_revoke: Callable[[list[TopicPartition]], None] | None = None

    def on_partitions_revoked(self, revoked: list[TopicPartition]) -> None:
        self.threads.add(threading.current_thread().name)
        if self.on_revoke is not None and revoked:
            self.on_revoke(revoked)
        self.log.append((self.name, "revoked", sorted(revoked)))

    def on_partitions_assigned(self, assigned: list[TopicPartition]) -> None:
        self.threads.add(threading.current_thread().name)
        self.log.append((self.name, "assigned", sorted(assigned)))
        if self.on_assign is not None:
            self.on_assign(assigned)


def _poll_until(
    consumer: AioConsumer, done: Callable[[], bool], timeout_s: float = 60
) -> dict[TopicPartition, list[Any]]:
    """Poll (as a loop does, which drives the group) until ``done``; returns all records."""
    out: dict[TopicPartition, list[Any]] = {}
    deadline = time.monotonic() + timeout_s
    while not done():
        assert time.monotonic() < deadline, "condition not met in time"
        for tp, records in consumer.poll(timeout_ms=200).items():
            out.setdefault(tp, []).extend(records)
    return out


def test_records_partitions_seek_pause_and_offsets_as_kafka_python(
    loop_consumers: Any, filled_topic: str
) -> None:
    consumer = loop_consumers(max_poll_records=500)
    log: list[Any] = []
    listener = Recorder("a", log)
    tps = [TopicPartition(filled_topic, p) for p in range(PARTITIONS)]
    # As the loops do: pause what is assigned, restore (seek), then resume.
    listener.on_assign = lambda assigned: consumer.pause(*assigned)
    subscribe(consumer, [filled_topic], listener)
    _poll_until(consumer, lambda: consumer.assignment() == set(tps))
    assert consumer.paused() == set(tps)  # the callback's pause went through the facade
    assert not any("aiokafka" in name for name in listener.threads)  # off the event loop
    consumer.seek(tps[0], 30)
    consumer.resume(tps[0])
    got = _poll_until(consumer, lambda: consumer.position(tps[0]) == PER_PARTITION, 60)
    assert set(got) == {tps[0]}  # the paused partition sent nothing
    assert all(type(tp) is TopicPartition for tp in got)  # kafka-python's, not aiokafka's
    records = got[tps[0]]
    assert [r.offset for r in records] == list(range(30, PER_PARTITION))
    first = records[0]
    assert (first.topic, first.partition, first.key, first.value) == (
        filled_topic,
        0,
        b"k30",
        b"0|30",
    )
    assert list(first.headers) == [("h", b"v")]
    assert first.timestamp > 0
    assert consumer.highwater(tps[0]) == PER_PARTITION
    assert consumer.highwater(TopicPartition(filled_topic, 99)) is None  # not assigned
    assert consumer.end_offsets(tps, timeout_ms=10_000) == dict.fromkeys(tps, PER_PARTITION)
    consumer.seek(tps[1], PER_PARTITION - 5)
    consumer.resume(tps[1])
    got = _poll_until(consumer, lambda: consumer.position(tps[1]) == PER_PARTITION, 60)
    assert [r.offset for r in got[tps[1]]] == list(range(PER_PARTITION - 5, PER_PARTITION))


def test_revoke_runs_before_the_next_owner_is_assigned_and_heartbeats_go_on(
    loop_consumers: Any, filled_topic: str
) -> None:
    """A slow revoke callback (a checkpoint flush) keeps the member in the group: the event
    loop heartbeats meanwhile, and the other member gets its share only after it."""
    log: list[tuple[str, str, list[TopicPartition]]] = []
    tps = {TopicPartition(filled_topic, p) for p in range(PARTITIONS)}
    a, b = loop_consumers(), loop_consumers()
    first, second = Recorder("a", log), Recorder("b", log)
    revoke_started = threading.Event()

    def slow_revoke(_revoked: list[TopicPartition]) -> None:
        revoke_started.set()
        a.assignment()  # a facade call from inside the callback: no deadlock
        # A slow checkpoint flush (work, not synchronisation): longer than two heartbeat
        # intervals (2 s), within the 10 s session timeout.
        time.sleep(4)

    first.on_revoke = slow_revoke
    subscribe(a, [filled_topic], first)
    _poll_until(a, lambda: a.assignment() == tps)
    subscribe(b, [filled_topic], second)
    stop = threading.Event()
    poller = threading.Thread(target=lambda: _drive(a, stop), daemon=True)
    poller.start()
    try:
        _poll_until(b, lambda: len(b.assignment()) == 1, 90)
        wait_for(lambda: len(a.assignment()) == 1, 30, "a keeps one partition")
    finally:
        stop.set()
        poller.join(10)
    assert revoke_started.is_set()
    revoked_at = log.index(("a", "revoked", sorted(tps)))
    assigned_b = next(i for i, e in enumerate(log) if e[0] == "b" and e[1] == "assigned" and e[2])
    assert revoked_at < assigned_b
    # a stayed a member through its slow callback: it was assigned again, not dropped.
    assert a.assignment() | b.assignment() == tps


def _drive(consumer: AioConsumer, stop: threading.Event) -> None:
    while not stop.is_set():
        consumer.poll(timeout_ms=200)


def test_close_during_a_rebalance_returns_and_hands_the_partitions_over(
    loop_consumers: Any, filled_topic: str
) -> None:
    log: list[tuple[str, str, list[TopicPartition]]] = []
    tps = {TopicPartition(filled_topic, p) for p in range(PARTITIONS)}
    a, b = loop_consumers(), loop_consumers()
    first = Recorder("a", log)
    in_revoke, release = threading.Event(), threading.Event()

    def blocked_revoke(_revoked: list[TopicPartition]) -> None:
        in_revoke.set()
        release.wait(20)

    first.on_revoke = blocked_revoke
    subscribe(a, [filled_topic], first)
    _poll_until(a, lambda: a.assignment() == tps)
    subscribe(b, [filled_topic], Recorder("b", log))
    stop = threading.Event()
    poller = threading.Thread(target=lambda: _drive(b, stop), daemon=True)
    poller.start()
    try:
        wait_for(in_revoke.is_set, 60, "a's revoke callback")
        closer = threading.Thread(target=a.close)
        closer.start()
        release.set()
        closer.join(35)
        assert not closer.is_alive(), "close hung during a rebalance"
        wait_for(lambda: b.assignment() == tps, 60, "b owns every partition")
    finally:
        stop.set()
        poller.join(10)
    assert not a._thread.is_alive()  # its event loop's thread is gone


def test_an_unreachable_cluster_is_an_outage() -> None:
    clients = WorkerClients(KafkaSettings(bootstrap=f"127.0.0.1:{free_port()}"), "tests")
    with pytest.raises(Exception) as caught:
        clients.loop_consumer(group_id="g", request_timeout_ms=2000)
    assert is_outage(caught.value), type(caught.value).__name__
