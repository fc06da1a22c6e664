"""A synchronous consumer on aiokafka: the worker's loops keep their threads, records are
parsed by aiokafka's C extension instead of kafka-python's pure Python (issue 17).

``AioConsumer`` owns one ``AIOKafkaConsumer`` on its own asyncio event loop, in its own daemon
thread (aiokafka is not thread-safe): heartbeats, fetches and rebalances run there, as
kafka-python's run on its network thread. Every method is a blocking call that the caller's
thread hands to that loop; it exposes the part of ``kafka.KafkaConsumer`` the worker uses
(``subscribe``, ``poll``, ``pause``, ``resume``, ``seek``, ``position``, ``highwater``,
``end_offsets``, ``commit_async``, ``assignment``, ``partitions_for_topic``, ``close``; and
``assign``, ``seek_to_beginning``, ``commit`` for the bench's passthrough) and speaks
kafka-python's ``TopicPartition`` at its boundary. Records are aiokafka's ``ConsumerRecord``
(same attributes the loops read: topic, partition, offset, key, value, headers, timestamp).

Rebalance callbacks: aiokafka awaits them on its loop. The loops' callbacks are synchronous and
take the loop's lock, which the loop's thread holds while it calls ``seek`` or ``pause``; so
each callback runs on a thread of its own (aiokafka awaits one at a time) while the event loop
keeps heartbeating and serving the calls the callback (or the loop's thread) makes. A call made
from the event loop's own thread runs directly (no deadlock). aiokafka calls
``on_partitions_revoked`` before it rejoins the group and returns no records while a rebalance
goes on, so a revoked partition is checkpointed before its next owner is assigned
(``docs/reliability.md``).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import threading
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import Any, TypeVar

from aiokafka import AIOKafkaConsumer, ConsumerRecord
from aiokafka.abc import ConsumerRebalanceListener as AioListener
from aiokafka.errors import IllegalStateError
from aiokafka.structs import TopicPartition as AioPartition
from kafka import TopicPartition
from kafka.structs import OffsetAndMetadata

from broker.threads import in_daemon_thread

_log = logging.getLogger(__name__)
T = TypeVar("T")
# Calls that wait on the broker give up after this long (KafkaTimeoutError-like TimeoutError).
CALL_TIMEOUT_S = 60.0
# Leaving the group is a courtesy: with the broker gone, the session timeout drops the member.
CLOSE_TIMEOUT_S = 10.0
START_TIMEOUT_S = 60.0


def _kp(tp: Any) -> TopicPartition:
    return TopicPartition(tp.topic, tp.partition)


def _aio(tp: Any) -> AioPartition:
    return AioPartition(tp.topic, tp.partition)


class _Bridge(AioListener):
    """Runs a synchronous kafka-python-style listener on a thread of its own."""

    def __init__(self, owner: AioConsumer, listener: Any) -> None:
        self.owner = owner
        self.listener = listener

    async def on_partitions_revoked(self, revoked: Iterable[Any]) -> None:
        await self.owner.in_callback_thread(
            self.listener.on_partitions_revoked, sorted(_kp(tp) for tp in revoked)
        )

    async def on_partitions_assigned(self, assigned: Iterable[Any]) -> None:
        await self.owner.in_callback_thread(
            self.listener.on_partitions_assigned, sorted(_kp(tp) for tp in assigned)
        )


class AioConsumer:
    """A blocking ``KafkaConsumer`` look-alike over an ``AIOKafkaConsumer`` (module docstring).

    ``config``: ``AIOKafkaConsumer`` keyword arguments (``KafkaSettings.aiokafka`` plus the
    consumer options); ``name`` names its threads.
    """

    def __init__(self, config: Mapping[str, Any], *, name: str = "consumer") -> None:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self._loop.run_forever, name=f"{name}-aiokafka", daemon=True
        )
        self._name = name
        self._closed = False
        self._thread.start()
        try:
            self._consumer: AIOKafkaConsumer = self._run(self._start(dict(config)), START_TIMEOUT_S)
        except BaseException:
            self._shutdown()
            raise

    async def _start(self, config: dict[str, Any]) -> AIOKafkaConsumer:
        consumer = AIOKafkaConsumer(**config)
        try:
            await consumer.start()
        except BaseException:
            try:
                await consumer.stop()
            except Exception as exc:  # the start's error is the one to report
                _log.debug("stopping a consumer that did not start failed (%s)", type(exc).__name__)
            raise
        return consumer

    # -- plumbing -------------------------------------------------------------------------

    def _on_loop_thread(self) -> bool:
        return threading.current_thread() is self._thread

    def _run(self, coro: Awaitable[T], timeout_s: float = CALL_TIMEOUT_S) -> T:
        """Run ``coro`` on the event loop and wait for it (``TimeoutError`` past the timeout)."""
        if self._on_loop_thread():
            if asyncio.iscoroutine(coro):
                coro.close()  # never awaited: no "never awaited" warning on top of the error
            msg = "a blocking consumer call from the consumer's own event loop"
            raise RuntimeError(msg)

        async def bounded() -> T:
            async with asyncio.timeout(timeout_s):  # not wait_for: it can swallow a cancel
                return await coro

        self._check_alive(coro)
        future = asyncio.run_coroutine_threadsafe(bounded(), self._loop)
        return self._wait(future, timeout_s + 5.0)

    def _check_alive(self, coro: Any = None) -> None:
        # A dead event loop never answers: fail fast, as an outage (the loop starts over
        # with a new consumer and a new event loop).
        if not self._thread.is_alive() or self._loop.is_closed():
            if asyncio.iscoroutine(coro):
                coro.close()
            msg = "the consumer's event loop is gone"
            raise ConnectionError(msg)

    def _wait(self, future: Any, timeout_s: float) -> Any:
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                return future.result(0.5)
            except concurrent.futures.TimeoutError:
                if not self._thread.is_alive() or time.monotonic() > deadline:
                    future.cancel()
                    msg = "the consumer's event loop did not answer"
                    raise TimeoutError(msg) from None

    def _call(self, fn: Callable[..., T], *args: Any) -> T:
        """Run the synchronous aiokafka method ``fn`` on the event loop's thread."""
        if self._on_loop_thread():
            return fn(*args)

        async def direct() -> T:
            return fn(*args)

        self._check_alive()
        return self._wait(asyncio.run_coroutine_threadsafe(direct(), self._loop), CALL_TIMEOUT_S)

    async def in_callback_thread(self, fn: Callable[[list[TopicPartition]], Any], tps: Any) -> None:
        """Run a listener callback on a thread of its own and await it (the loop stays free).

        A daemon thread per callback (rebalances are rare), not an executor: a callback still
        blocked when the process exits must not hold the interpreter's exit up.
        """
        await in_daemon_thread(fn, tps, name=f"{self._name}-rebalance")

    # -- the KafkaConsumer surface the worker uses -------------------------------------------

    def subscribe(self, topics: Iterable[str], listener: Any = None) -> None:
        """Join the group for ``topics``; ``listener``'s callbacks run off the event loop."""
        bridge = None if listener is None else _Bridge(self, listener)
        self._call(lambda: self._consumer.subscribe(list(topics), listener=bridge))

    def assign(self, tps: Iterable[TopicPartition]) -> None:
        """Read ``tps`` without a group (the bench's passthrough)."""
        self._call(self._consumer.assign, [_aio(tp) for tp in tps])

    def seek_to_beginning(self, *tps: TopicPartition) -> None:
        """Fetch ``tps`` from their first offset next."""
        self._run(self._consumer.seek_to_beginning(*[_aio(tp) for tp in tps]))

    def partitions_for_topic(self, topic: str) -> set[int] | None:
        """The partitions of ``topic`` in the consumer's metadata (refreshed when unknown)."""
        found = self._call(self._consumer.partitions_for_topic, topic)
        if found:
            return set(found)
        self._run(self._consumer._client.force_metadata_update())  # noqa: SLF001 - no public way
        found = self._call(self._consumer.partitions_for_topic, topic)
        return set(found) if found else None

    def poll(
        self, timeout_ms: int = 0, max_records: int | None = None
    ) -> dict[TopicPartition, list[ConsumerRecord]]:
        """Records fetched since the last poll, per partition, waiting up to ``timeout_ms``."""

        async def bounded() -> Any:
            try:  # getmany waits for a rebalance to end, whatever timeout_ms says
                async with asyncio.timeout(timeout_ms / 1000 + 0.5):
                    return await self._consumer.getmany(
                        timeout_ms=timeout_ms, max_records=max_records
                    )
            except TimeoutError:
                return {}

        polled = self._run(bounded(), timeout_ms / 1000 + CALL_TIMEOUT_S)
        return {_kp(tp): records for tp, records in polled.items()}

    def pause(self, *tps: TopicPartition) -> None:
        """Stop fetching ``tps`` (aiokafka drops what it had buffered for them and fetches it
        again from the position once resumed: nothing is lost)."""
        self._call(self._consumer.pause, *[_aio(tp) for tp in tps])

    def resume(self, *tps: TopicPartition) -> None:
        """Fetch ``tps`` again."""
        self._call(self._consumer.resume, *[_aio(tp) for tp in tps])

    def paused(self) -> set[TopicPartition]:
        """The partitions paused now."""
        return {_kp(tp) for tp in self._call(self._consumer.paused)}

    def seek(self, tp: TopicPartition, offset: int) -> None:
        """Fetch ``tp`` from ``offset`` next (drops what was buffered for it)."""
        self._call(self._consumer.seek, _aio(tp), offset)

    def assignment(self) -> set[TopicPartition]:
        """The partitions assigned now (empty while a rebalance goes on)."""
        return {_kp(tp) for tp in self._call(self._consumer.assignment)}

    def highwater(self, tp: TopicPartition) -> int | None:
        """The end offset the last fetch of ``tp`` saw; ``None`` if none yet or not assigned."""

        def read() -> int | None:
            try:
                return self._consumer.highwater(_aio(tp))
            except (AssertionError, IllegalStateError):
                return None

        return self._call(read)

    def position(self, tp: TopicPartition, timeout_ms: int | None = None) -> int:
        """The next offset to fetch from ``tp`` (raises ``TimeoutError`` past ``timeout_ms``)."""
        timeout_s = CALL_TIMEOUT_S if timeout_ms is None else timeout_ms / 1000
        return int(self._run(self._consumer.position(_aio(tp)), timeout_s))

    def end_offsets(
        self, tps: Iterable[TopicPartition], timeout_ms: int | None = None
    ) -> dict[TopicPartition, int]:
        """The end offsets of ``tps`` now (the last stable offsets under read_committed)."""
        timeout_s = CALL_TIMEOUT_S if timeout_ms is None else timeout_ms / 1000
        ends = self._run(self._consumer.end_offsets([_aio(tp) for tp in tps]), timeout_s)
        return {_kp(tp): int(end) for tp, end in ends.items()}

    def commit(self, offsets: Mapping[TopicPartition, OffsetAndMetadata]) -> None:
        """Commit ``offsets`` and wait for the broker's answer."""
        structured = {_aio(tp): (om.offset, om.metadata) for tp, om in offsets.items()}
        self._run(self._consumer.commit(structured))

    def commit_async(self, offsets: Mapping[TopicPartition, OffsetAndMetadata]) -> None:
        """Commit ``offsets`` without waiting; a failure is logged (they are hints only)."""
        structured = {_aio(tp): (om.offset, om.metadata) for tp, om in offsets.items()}

        async def commit() -> None:
            try:
                await self._consumer.commit(structured)
            except Exception as exc:  # a hint lost: the next assignment seeks anyway
                _log.warning("offset commit failed (%s)", type(exc).__name__)

        asyncio.run_coroutine_threadsafe(commit(), self._loop)

    def close(self, autocommit: bool = False, timeout_s: float = CLOSE_TIMEOUT_S) -> None:
        """Leave the group and stop the event loop (within ``timeout_s``); never commits."""
        del autocommit  # auto commit is off: nothing to commit on close
        if self._closed:
            return
        self._closed = True
        try:
            self._run(self._consumer.stop(), timeout_s)
        except Exception as exc:  # a broker gone: the group drops the member on its own
            _log.debug("consumer stop failed (%s)", type(exc).__name__)
        finally:
            self._shutdown()

    def _shutdown(self) -> None:
        async def cancel_rest() -> None:
            current = asyncio.current_task()
            rest = [t for t in asyncio.all_tasks() if t is not current]
            for task in rest:
                task.cancel()
            await asyncio.gather(*rest, return_exceptions=True)

        if self._thread.is_alive():
            try:
                asyncio.run_coroutine_threadsafe(cancel_rest(), self._loop).result(5)
            except Exception as exc:
                _log.debug("cancelling the consumer's tasks failed (%s)", type(exc).__name__)
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(5)
        if not self._thread.is_alive():
            self._loop.close()
