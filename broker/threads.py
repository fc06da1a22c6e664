"""Blocking work awaited from an event loop on a daemon thread of its own.

Not ``asyncio.to_thread``: the loop's shutdown waits for its executor's threads, so a call
still blocked (a Kafka listing of an unreachable broker, a rebalance callback waiting for a
lock) would hold a stopping process up; a daemon thread does not.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Callable
from typing import Any


async def in_daemon_thread(function: Callable[..., Any], *args: Any, name: str) -> Any:
    """``function(*args)`` on a new daemon thread called ``name``; its result or exception.

    Cancelling the awaiting task stops waiting, not the thread: its outcome is dropped."""
    loop = asyncio.get_running_loop()
    future: asyncio.Future[Any] = loop.create_future()

    def settle(result: Any, error: BaseException | None) -> None:
        if future.done():  # cancelled meanwhile
            return
        if error is not None:
            future.set_exception(error)
        else:
            future.set_result(result)

    def run() -> None:
        result: Any = None
        error: BaseException | None = None
        try:
            result = function(*args)
        except BaseException as exc:  # handed to the awaiting task
            error = exc
        with contextlib.suppress(RuntimeError):  # the loop closed: nobody waits any more
            loop.call_soon_threadsafe(settle, result, error)

    threading.Thread(target=run, name=name, daemon=True).start()
    return await future
