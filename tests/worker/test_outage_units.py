"""The outage path of the worker without Kafka: what counts as an outage, what a loop saves
after an error (nothing), how producers are let go, what a stale probe says."""

from __future__ import annotations

import socket
import threading
import time
import urllib.request
from typing import Any

import pytest
from aiokafka import errors as aio
from kafka import TopicPartition
from kafka.errors import (
    KafkaConnectionError,
    KafkaTimeoutError,
    MessageSizeTooLargeError,
    ProducerFencedError,
    SaslAuthenticationFailedError,
    TopicAuthorizationFailedError,
)
from prometheus_client import CollectorRegistry

from broker.kafka.clients import KafkaOutage, ReadTimeout, WorkerError, abandon, is_outage
from broker.kafka.health import MAX_CONNECTIONS, Health, HealthServer
from broker.kafka.probe import KafkaProbe, ProbeState
from broker.kafka.settings import KafkaSettings
from broker.worker.keystore import KeyStore
from broker.worker.mergeloop import MergeLoop
from broker.worker.metrics import WorkerMetrics
from broker.worker.rawloop import RawLoop
from tests.worker.test_worker_units import KEK, MemoryLog


def _caused(outer: Exception, cause: BaseException) -> Exception:
    outer.__cause__ = cause
    return outer


@pytest.mark.parametrize(
    ("error", "outage"),
    [
        (KafkaTimeoutError(), True),
        (KafkaConnectionError(), True),
        (ConnectionResetError(), True),
        (ReadTimeout("slow"), True),
        (KafkaOutage("no metadata"), True),
        (ProducerFencedError(), True),  # the view's next owner took over: start over
        (_caused(WorkerError("append failed"), KafkaTimeoutError()), True),
        (MessageSizeTooLargeError(), False),  # Kafka will never take it: retrying stalls
        (SaslAuthenticationFailedError(), False),
        (_caused(WorkerError("x"), TopicAuthorizationFailedError()), False),
        (FileNotFoundError(), False),  # a missing certificate file is no outage
        (ValueError("a bug"), False),
        # aiokafka's, as the loops' consumer raises them (broker/kafka/aioconsumer.py)
        (aio.KafkaConnectionError(), True),
        (aio.KafkaTimeoutError(), True),  # not marked retriable by aiokafka
        (aio.RequestTimedOutError(), True),
        (aio.NodeNotReadyError(), True),
        (aio.NotCoordinatorForGroupError(), True),
        (aio.CommitFailedError(), True),
        (aio.ProducerFenced(), True),
        (TimeoutError(), True),  # a facade call past its deadline
        (aio.TopicAuthorizationFailedError(), False),
        (aio.GroupAuthorizationFailedError(), False),
        (_caused(WorkerError("x"), aio.SaslAuthenticationFailed()), False),
        (aio.IllegalStateError(), False),  # a bug: a call on a partition not assigned
        (aio.MessageSizeTooLargeError(), False),
    ],
)
def test_only_the_cluster_failing_is_an_outage(error: BaseException, outage: bool) -> None:
    assert is_outage(error) is outage


def test_an_error_raised_while_handling_an_outage_is_judged_on_its_own() -> None:
    try:
        try:
            raise KafkaTimeoutError()
        except KafkaTimeoutError:
            raise ValueError("a bug in the handler") from None
    except ValueError as exc:
        assert exc.__context__ is not None
        assert not is_outage(exc)


class _Stage:
    """A PartialsStage stand-in that records what the loop asks of it."""

    def __init__(self) -> None:
        self.partitions = [0, 1]
        self.checkpointed: list[int] = []
        self.released: list[int] = []

    def checkpoint(self, partition: int) -> list[Any]:
        self.checkpointed.append(partition)
        return []

    def release(self, partition: int) -> None:
        self.released.append(partition)
        self.partitions.remove(partition)


def test_a_raw_loop_revoked_after_an_error_saves_nothing() -> None:
    stage = _Stage()
    stages = {"raw.t": stage}
    loop = RawLoop(None, stages, {}, WorkerMetrics(), contract="c")  # type: ignore[arg-type]
    loop.discarding = True  # as run_loop leaves it when an error unwinds it
    loop.revoke([TopicPartition("raw.t", 0), TopicPartition("raw.t", 1)])
    assert stage.checkpointed == []  # the fold may be half-done: never checkpoint it
    assert stage.released == [0, 1]


class _Producer:
    def __init__(self, fail: bool = False) -> None:
        self.fail, self.closed = fail, False
        self._sender = self  # abandon() force-closes the sender of a producer that will not close
        self.forced = False

    def close(self, timeout: float) -> None:
        if self.fail:
            raise KafkaTimeoutError("batches not acknowledged")
        self.closed = True

    def force_close(self) -> None:
        self.forced = True


class _View:
    def __init__(self) -> None:
        self.steps = 0

    def step(self, force_state: bool = False) -> None:
        self.steps += 1
        raise AssertionError("a view given up after an error must not be saved")


def test_a_merge_loop_revoked_after_an_error_commits_no_state() -> None:
    loop = MergeLoop(None, lambda _: None, [], {}, contract="c")  # type: ignore[arg-type, return-value]
    view, producer = _View(), _Producer(fail=True)
    loop.owned["partials.v"] = (view, producer)  # type: ignore[assignment]
    loop.discarding = True
    loop.revoke([TopicPartition("partials.v", 0)])
    assert view.steps == 0 and loop.owned == {}
    assert producer.forced  # close() raised: the sender is force-closed, not leaked


def test_abandon_never_raises_and_closes_what_closes() -> None:
    healthy, stuck = _Producer(), _Producer(fail=True)
    abandon(healthy, 1)  # type: ignore[arg-type]
    abandon(stuck, 1)  # type: ignore[arg-type]
    assert healthy.closed and not healthy.forced
    assert stuck.forced


def test_a_probe_whose_last_answer_is_old_says_unreachable() -> None:
    probe = KafkaProbe(KafkaSettings(bootstrap="127.0.0.1:1"), "tests", "t", every_s=1.0)
    now = time.monotonic()
    probe._state = ProbeState(True, None, now - 60, now - 60)  # a thread stuck for a minute
    assert not probe.state().reachable
    probe._state = ProbeState(True, None, now, now)
    assert probe.state().reachable


def test_idle_connections_cannot_pile_up_threads_on_the_health_server() -> None:
    server = HealthServer("127.0.0.1", 0, CollectorRegistry(), lambda: Health("ok", "reachable"))
    server.start()
    before = threading.active_count()
    idle = [
        socket.create_connection(("127.0.0.1", server.port)) for _ in range(3 * MAX_CONNECTIONS)
    ]
    try:
        time.sleep(0.5)  # let the server accept them (bounded: it closes what it cannot serve)
        assert threading.active_count() - before <= MAX_CONNECTIONS + 1
    finally:
        for sock in idle:
            sock.close()
    deadline = time.monotonic() + 15
    while True:  # the slots come back once the idle sockets are gone or timed out
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{server.port}/healthz", timeout=2) as r:  # noqa: S310
                assert r.status == 200
                break
        except OSError:
            assert time.monotonic() < deadline, "the health server never answered again"
            time.sleep(0.2)
    server.stop()


def test_a_store_never_reuses_a_candidate_name() -> None:
    class LosingLog(MemoryLog):
        """The first append times out on its way (it may land later)."""

        def __init__(self) -> None:
            super().__init__()
            self.names: list[str] = []

        def append(self, key: str, value: bytes | None) -> None:
            self.names.append(key)
            if len(self.names) == 1:
                raise WorkerError("writing timed out")
            super().append(key, value)

    log = LosingLog()
    store = KeyStore("c", log, KEK, "w1")
    with pytest.raises(WorkerError):
        store.ring.key("c", 5)
    store.ring.key("c", 5)  # after the loop started over: a second candidate
    assert len(log.names) == 2 and log.names[0] != log.names[1]
