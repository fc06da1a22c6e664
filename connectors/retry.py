"""Retrying HTTP calls that the other side asks us to retry: 5xx, 429, 408, no connection.

Used by the pull connectors (``connectors.poll.retrying_fetch``) and by the gateway pusher
(``connectors.push.GatewayPusher``, behind ``respublica replay``/``simulate``). The waits are
exponential with jitter (``stamina``, a small maintained layer over tenacity with safe
defaults and async support), and a server's ``Retry-After`` (seconds or an HTTP date) replaces
the computed wait, capped by ``RetryPolicy.retry_after_max_s``. Other 4xx answers are the
caller's fault and are not retried. When the attempts or the total time run out, the last
``TransientError`` is raised: the caller turns it into "resume from here".
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any, TypeVar

from connectors.base import ConnectorError

T = TypeVar("T")
_log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RetryPolicy:
    """How long one request is retried (``respublica connect/replay --retry-*`` options)."""

    attempts: int = 10  # tries of one request in all; 1 = never retry
    timeout_s: float = 300.0  # total time for one request, waits included
    wait_initial_s: float = 0.5  # first wait; doubles on every retry, plus jitter
    wait_max_s: float = 30.0  # longest computed wait
    retry_after_max_s: float = 120.0  # a server's Retry-After is honoured up to this


NO_RETRY = RetryPolicy(attempts=1)


class TransientError(ConnectorError):
    """A failure worth retrying; ``retry_after_s`` is the server's wish, if it said one."""

    def __init__(self, message: str, retry_after_s: float | None = None) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


def transient_status(status: int) -> bool:
    """5xx, 429 Too Many Requests and 408 Request Timeout mean "try again later"."""
    return status >= 500 or status in (408, 429)


def retry_after_seconds(value: str | None, now: datetime | None = None) -> float | None:
    """``Retry-After`` as seconds from ``now``: delta-seconds or an HTTP date; None if absent
    or unreadable. A date in the past gives 0."""
    if value is None:
        return None
    text = value.strip()
    if text.isascii() and text.isdigit():  # "²".isdigit() is true, and float() refuses it
        return float(text)
    try:
        when = parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:  # RFC 9110 dates are GMT
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - (now or datetime.now(UTC))).total_seconds())


def status_error(what: str, status: int, retry_after: str | None) -> ConnectorError:
    """The error for a non-success answer: ``TransientError`` when a retry may help."""
    msg = f"{what}: HTTP {status}"
    if transient_status(status):
        return TransientError(msg, retry_after_seconds(retry_after))
    return ConnectorError(msg)


async def with_retries(call: Callable[[], Awaitable[T]], policy: RetryPolicy) -> T:
    """Await ``call()`` until it does not raise ``TransientError``, within ``policy``.

    The last ``TransientError`` is raised when the attempts or the total time run out.
    """
    import stamina

    _install_log_hook()

    def backoff(exc: Exception) -> bool | float:
        if not isinstance(exc, TransientError):
            return False
        if exc.retry_after_s is None:
            return True
        return min(exc.retry_after_s, policy.retry_after_max_s)

    async for attempt in stamina.retry_context(
        on=backoff,
        attempts=max(1, policy.attempts),
        timeout=policy.timeout_s,
        wait_initial=policy.wait_initial_s,
        wait_max=policy.wait_max_s,
        wait_jitter=policy.wait_initial_s,
    ):
        with attempt:
            return await call()
    msg = "unreachable: stamina raises or returns"  # pragma: no cover
    raise AssertionError(msg)  # pragma: no cover


@functools.cache
def _install_log_hook() -> None:
    """Log retries ourselves, once per process (stamina's hooks are process-wide): its default
    hooks would add a Prometheus counter named outside ``respublica_`` to the global registry."""
    from stamina.instrumentation import set_on_retry_hooks

    set_on_retry_hooks([_log_retry])


def _log_retry(details: Any) -> None:
    # Our TransientError messages name a feed and a status, never a body or a URL.
    _log.warning("retry %d in %.1fs: %s", details.retry_num, details.wait_for, details.caused_by)
