"""The shell around pull connectors: HTTP fetching and time, both injected.

A connector's parsing is pure (``gbfs.py``, ``mds.py``, ``waze.py``); its poller gets a
``Fetch`` (``async (url, headers) -> HttpResponse``) and a ``Clock`` (``now_ms``, ``sleep``),
so tests drive it against a local test server with a fake clock that never really sleeps.
``retrying_fetch`` wraps a ``Fetch`` so that 5xx, 429, 408 and network failures are retried
with backoff (``connectors.retry``); other answers go to the poller as they are.
``aiohttp_fetch`` holds at most ``max_bytes`` of one answer (64 MiB by default, counted after
decompression): a feed that sends more is a ``ResponseTooLarge`` error, not a process that
runs out of memory. Error messages name the feed and the HTTP status, never a body.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

import aiohttp

from connectors.base import ConnectorError
from connectors.retry import (
    RetryPolicy,
    TransientError,
    status_error,
    transient_status,
    with_retries,
)

T = TypeVar("T")
DEFAULT_MAX_RESPONSE_BYTES = 64 * 1024 * 1024
_CHUNK_BYTES = 256 * 1024


class ResponseTooLarge(ConnectorError):
    """A feed answered with more bytes than the connector holds (``max_bytes``)."""


@dataclass(frozen=True)
class HttpResponse:
    """Status, body and ``Retry-After`` header (if any) of one GET."""

    status: int
    body: bytes
    retry_after: str | None = None

    def json(self, what: str) -> Any:
        """The body as JSON; ``ConnectorError`` naming ``what`` if it is not."""
        try:
            return json.loads(self.body)
        except (ValueError, UnicodeDecodeError) as exc:
            msg = f"{what}: the response is not JSON"
            raise ConnectorError(msg) from exc


Fetch = Callable[[str, Mapping[str, str]], Awaitable[HttpResponse]]


class Clock(Protocol):
    """Wall time and waiting, replaceable in tests."""

    def now_ms(self) -> int:
        """Milliseconds since the epoch."""
        ...

    async def sleep(self, seconds: float) -> None:
        """Wait (a fake clock just advances)."""
        ...


class SystemClock:
    """The real clock."""

    def now_ms(self) -> int:
        """Milliseconds since the epoch, now."""
        return time.time_ns() // 1_000_000

    async def sleep(self, seconds: float) -> None:
        """``asyncio.sleep``."""
        await asyncio.sleep(seconds)


def aiohttp_fetch(
    session: aiohttp.ClientSession, max_bytes: int = DEFAULT_MAX_RESPONSE_BYTES
) -> Fetch:
    """A ``Fetch`` on an aiohttp session; network failures become ``TransientError``, an
    answer over ``max_bytes`` ``ResponseTooLarge`` (read no further than the cap)."""

    async def fetch(url: str, headers: Mapping[str, str]) -> HttpResponse:
        try:
            async with session.get(url, headers=dict(headers)) as response:
                body = await _read_capped(response, max_bytes)
                return HttpResponse(response.status, body, response.headers.get("Retry-After"))
        except (aiohttp.ClientError, TimeoutError) as exc:
            # Refused, reset or timed out: the feed may be back in a moment.
            msg = f"cannot fetch the feed ({type(exc).__name__})"
            raise TransientError(msg) from exc

    return fetch


async def _read_capped(response: aiohttp.ClientResponse, max_bytes: int) -> bytes:
    """The body, or ``ResponseTooLarge`` as soon as it (decompressed) passes ``max_bytes``."""
    declared = response.content_length
    if declared is not None and declared > max_bytes:
        raise _too_large(max_bytes)
    body = bytearray()
    async for chunk in response.content.iter_chunked(_CHUNK_BYTES):
        body += chunk
        if len(body) > max_bytes:
            raise _too_large(max_bytes)
    return bytes(body)


def _too_large(max_bytes: int) -> ResponseTooLarge:
    msg = (
        f"the feed answered more than {max_bytes / 2**20:g} MiB; a feed that large is not "
        "read (raise --max-response-mib if it is genuine)"
    )
    return ResponseTooLarge(msg)


def retrying_fetch(fetch: Fetch, policy: RetryPolicy) -> Fetch:
    """``fetch`` retried while it fails with a network error or a 5xx/429/408 answer.

    When ``policy`` runs out, the last ``TransientError`` is raised (never a retryable answer).
    """

    async def fetch_with_retries(url: str, headers: Mapping[str, str]) -> HttpResponse:
        async def once() -> HttpResponse:
            response = await fetch(url, headers)
            if transient_status(response.status):
                what = "the feed"
                raise status_error(what, response.status, response.retry_after)
            return response

        return await with_retries(once, policy)

    return fetch_with_retries


async def get_json(
    fetch: Fetch, url: str, what: str, headers: Mapping[str, str] | None = None
) -> Any:
    """GET a JSON document that must answer 200."""
    response = await fetch(url, headers or {})
    if response.status != 200:
        raise status_error(what, response.status, response.retry_after)
    return response.json(what)


async def run_polls(
    poll_once: Callable[[], Awaitable[float]],
    clock: Clock,
    stop: asyncio.Event,
    max_polls: int | None = None,
) -> int:
    """Call ``poll_once`` (which returns the seconds to wait) until stopped; returns polls.

    ``stop`` (set by SIGTERM/SIGINT) interrupts a poll or a wait at once: the poll is
    cancelled where it is, and since pollers move their position only after Kafka
    acknowledged a batch, what it was doing is simply read again by the next run.
    """
    polls = 0
    while not stop.is_set() and (max_polls is None or polls < max_polls):
        done, delay = await _unless_stopped(poll_once(), stop)
        if not done:
            break
        polls += 1
        if max_polls is not None and polls >= max_polls:
            break
        await _unless_stopped(clock.sleep(delay or 0.0), stop)
    return polls


async def _unless_stopped(work: Awaitable[T], stop: asyncio.Event) -> tuple[bool, T | None]:
    """``(True, result)`` of ``work``, or ``(False, None)`` once ``stop`` is set (cancelled)."""
    task = asyncio.ensure_future(work)
    stopped = asyncio.ensure_future(stop.wait())
    try:
        await asyncio.wait({task, stopped}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        stopped.cancel()
        if not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
    if task.cancelled():
        return False, None
    return True, task.result()
