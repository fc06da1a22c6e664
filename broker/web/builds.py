"""Answers that cost work proportional to a view's history, built once per version of it.

An export file re-reads the whole public topic; a view's summary walks every released window.
``Builds`` runs such a build in its own small thread pool (never on the event loop, never in
the default executor the feeds and the catalogue use), keeps the last result per key with the
version of the view it was built at (``ReleaseBook.version``: it changes with every row the
feed reads), and answers again from that until the version changes. Identical requests while a
build runs wait for that build. With ``slots``, at most that many builds run at once and one
more request that would need a build gets ``BuildsBusy`` (the server answers 503 with
``Retry-After``); without, requests queue for the pool.

Memory: the last result per key (for exports, one file per view and format).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Hashable
from concurrent.futures import ThreadPoolExecutor
from typing import Generic, TypeVar

from contracts.errors import RespublicaError

T = TypeVar("T")


class BuildsBusy(RespublicaError):
    """Every build slot is taken: try again later."""


class Builds(Generic[T]):
    """Results of ``build()`` per key, kept for one version, built in a bounded pool."""

    def __init__(self, name: str, *, threads: int = 2, slots: int | None = None) -> None:
        self._executor = ThreadPoolExecutor(max_workers=threads, thread_name_prefix=name)
        self._slots = slots
        self._kept: dict[Hashable, tuple[int, T]] = {}
        self._running: dict[tuple[Hashable, int], asyncio.Future[T]] = {}
        self.count = 0
        """How many builds were started (the tests count them)."""

    async def get(self, key: Hashable, version: int, build: Callable[[], T]) -> T:
        """The result for ``key`` at ``version``: kept, being built, or built now."""
        kept = self._kept.get(key)
        if kept is not None and kept[0] == version:
            return kept[1]
        running = self._running.get((key, version))
        if running is None:
            running = self._start(key, version, build)
        # Shielded: a client that leaves does not cancel a build that others wait for.
        return await asyncio.shield(running)

    def _start(self, key: Hashable, version: int, build: Callable[[], T]) -> asyncio.Future[T]:
        if self._slots is not None and len(self._running) >= self._slots:
            msg = "every build slot is taken"
            raise BuildsBusy(msg)
        future = asyncio.get_running_loop().run_in_executor(self._executor, build)
        self._running[(key, version)] = future
        self.count += 1

        def done(finished: asyncio.Future[T]) -> None:
            self._running.pop((key, version), None)
            if finished.cancelled() or finished.exception() is not None:
                return
            kept = self._kept.get(key)
            if kept is None or kept[0] <= version:  # an older build never replaces a newer one
                self._kept[key] = (version, finished.result())

        future.add_done_callback(done)
        return future

    def close(self) -> None:
        """Stop the pool (a running build finishes in its thread)."""
        self._executor.shutdown(wait=False, cancel_futures=True)
