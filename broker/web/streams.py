"""``/api/events``: the server-sent events stream of releases, and its limits.

Every open page holds one stream. ``Hub`` fans each release out to the open streams; a stream
too slow to take ``queue_size`` events is *closed* (its handler returns and the browser
reconnects after ``retry:``), never left waiting on a queue nobody fills. ``StreamGate`` caps
the streams open at once, in all and per peer address (503 with ``Retry-After`` beyond), and
every stream ends after ``lifetime_s`` (the browser reconnects): one client cannot hold the
server's file descriptors, and a stream never outlives a rotated proxy or credential for long.
"""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from dataclasses import dataclass
from typing import Any

from aiohttp import web

KEEPALIVE_S = 15.0
RETRY_MS = 2000
RETRY_AFTER_S = 10


@dataclass(frozen=True)
class StreamLimits:
    """How many event streams may be open, and for how long."""

    total: int = 256
    per_peer: int = 16
    lifetime_s: float = 600.0
    queue_size: int = 1000


class Subscription:
    """One stream's queue of events; ``closed`` once it fell behind (a sentinel wakes it)."""

    _CLOSED: dict[str, Any] = {}

    def __init__(self, size: int) -> None:
        self._queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue(maxsize=size)
        self.closed = False

    def offer(self, event: dict[str, Any]) -> bool:
        """Queue ``event``; a full queue closes the subscription (returns False)."""
        if self.closed:
            return False
        try:
            self._queue.put_nowait(event)
        except asyncio.QueueFull:
            self.closed = True
            while not self._queue.empty():  # make room for the sentinel
                self._queue.get_nowait()
            self._queue.put_nowait(self._CLOSED)
            return False
        return True

    async def next(self, timeout_s: float) -> dict[str, Any] | None:
        """The next event; ``None`` after ``timeout_s`` without one or once closed."""
        if self.closed and self._queue.empty():
            return None
        try:
            event = await asyncio.wait_for(self._queue.get(), timeout_s)
        except TimeoutError:
            return None
        return None if event is self._CLOSED else event


class Hub:
    """Fans a release out to every open event stream (on the event loop's thread)."""

    def __init__(self, queue_size: int = 1000) -> None:
        self._queue_size = queue_size
        self._subscriptions: set[Subscription] = set()

    def subscribe(self) -> Subscription:
        """A subscription that receives every later event."""
        subscription = Subscription(self._queue_size)
        self._subscriptions.add(subscription)
        return subscription

    def unsubscribe(self, subscription: Subscription) -> None:
        """Stop delivering to ``subscription``."""
        self._subscriptions.discard(subscription)

    def publish(self, event: dict[str, Any]) -> None:
        """Deliver ``event``; a subscriber too slow to keep up is closed (it reconnects)."""
        for subscription in list(self._subscriptions):
            if not subscription.offer(event):
                self._subscriptions.discard(subscription)


class StreamGate:
    """Counts open streams, in all and per peer; refuses one beyond either cap."""

    def __init__(self, limits: StreamLimits) -> None:
        self._limits = limits
        self._by_peer: Counter[str] = Counter()
        self._open = 0

    def enter(self, peer: str) -> bool:
        """Take a place for a stream of ``peer``, if one is free."""
        if self._open >= self._limits.total or self._by_peer[peer] >= self._limits.per_peer:
            return False
        self._open += 1
        self._by_peer[peer] += 1
        return True

    def leave(self, peer: str) -> None:
        """Give the place back."""
        self._open -= 1
        self._by_peer[peer] -= 1
        if self._by_peer[peer] <= 0:
            del self._by_peer[peer]


def _dumps(data: Any) -> str:
    return json.dumps(data, ensure_ascii=False, allow_nan=False, separators=(",", ":"))


async def serve_events(
    request: web.Request, hub: Hub, gate: StreamGate, limits: StreamLimits
) -> web.StreamResponse:
    """One event stream, until the client leaves, falls behind or its lifetime is over."""
    peer = request.remote or "unknown"
    if not gate.enter(peer):
        raise web.HTTPServiceUnavailable(
            text="too many open event streams: try again later\n",
            headers={"Retry-After": str(RETRY_AFTER_S), "Cache-Control": "no-store"},
        )
    subscription = hub.subscribe()
    try:
        response = web.StreamResponse(
            headers={"Content-Type": "text/event-stream", "Cache-Control": "no-store"}
        )
        await response.prepare(request)
        await _pump(response, subscription, limits.lifetime_s)
    except ConnectionResetError:  # the page went away
        pass
    finally:
        hub.unsubscribe(subscription)
        gate.leave(peer)
    return response


async def _pump(response: web.StreamResponse, stream: Subscription, lifetime_s: float) -> None:
    loop = asyncio.get_running_loop()
    end = loop.time() + lifetime_s
    await response.write(f"retry: {RETRY_MS}\n\n".encode())
    while (left := end - loop.time()) > 0:
        event = await stream.next(min(KEEPALIVE_S, left))
        if stream.closed:
            return  # fell behind: the browser reconnects and reloads the view
        if event is None:
            await response.write(b": keep-alive\n\n")
            continue
        await response.write(f"event: release\ndata: {_dumps(event)}\n\n".encode())
