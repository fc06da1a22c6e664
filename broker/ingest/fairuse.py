"""Fair use of the gateway per provider token: an event rate and a number of open requests.

Each provider has a token bucket of events (``rate_events_per_s``, holding at most
``burst_events``) and at most ``max_concurrent`` requests in progress. A request is let in
while the bucket is not empty and a slot is free; once its items are counted, they are
charged, so the bucket may go into debt (a 5,000-event batch is never refused for being
larger than what is left) and the next requests wait until the debt is paid. A refusal is
429 with ``Retry-After`` (whole seconds). One provider flooding never slows another: each
has its own bucket and slots. The clock is injected (``time.monotonic`` by default).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field


@dataclass(frozen=True)
class FairUseLimits:
    """Per-token limits; 0 turns a limit off."""

    rate_events_per_s: float = 25_000.0
    burst_events: int = 50_000
    max_concurrent: int = 8


@dataclass
class _Account:
    tokens: float
    updated: float
    in_flight: int = 0


@dataclass
class FairUse:
    """The accounts of every provider seen (providers are few: one per tokens-file entry)."""

    limits: FairUseLimits
    clock: Callable[[], float] = time.monotonic
    _accounts: dict[str, _Account] = field(default_factory=dict)

    def enter(self, provider: str) -> float | None:
        """Take a request slot; None when admitted, else seconds to wait (``Retry-After``)."""
        account = self._refilled(provider)
        max_concurrent = self.limits.max_concurrent
        if max_concurrent and account.in_flight >= max_concurrent:
            return 1.0
        if self.limits.rate_events_per_s and account.tokens < 1:
            return (1 - account.tokens) / self.limits.rate_events_per_s
        account.in_flight += 1
        return None

    def charge(self, provider: str, events: int) -> None:
        """Spend ``events`` tokens (the bucket may go into debt)."""
        if self.limits.rate_events_per_s:
            self._refilled(provider).tokens -= events

    def leave(self, provider: str) -> None:
        """Give the request slot back."""
        self._accounts[provider].in_flight -= 1

    def _refilled(self, provider: str) -> _Account:
        now = self.clock()
        account = self._accounts.get(provider)
        if account is None:
            account = self._accounts[provider] = _Account(float(self.limits.burst_events), now)
        rate = self.limits.rate_events_per_s
        account.tokens = min(
            float(self.limits.burst_events), account.tokens + (now - account.updated) * rate
        )
        account.updated = now
        return account


def retry_after(seconds: float) -> str:
    """A ``Retry-After`` value: whole seconds, at least 1."""
    return str(max(1, math.ceil(seconds)))
