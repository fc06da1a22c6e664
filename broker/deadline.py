"""One deadline helper: every wait in respublica is bounded and says what it waited for.

``Deadline(seconds)`` is a point on the monotonic clock; ``wait_for`` polls a condition until
it holds or the deadline passes, then raises ``DeadlineExceeded`` naming what it waited for.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from contracts.errors import RespublicaError


class DeadlineExceeded(RespublicaError):
    """A bounded wait ran out of time."""


class Deadline:
    """``seconds`` from now on the monotonic clock."""

    __slots__ = ("at", "seconds")

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.at = time.monotonic() + seconds

    def remaining(self) -> float:
        """Seconds left (never negative)."""
        return max(0.0, self.at - time.monotonic())

    def expired(self) -> bool:
        """Whether the deadline has passed."""
        return time.monotonic() >= self.at


def wait_for(
    condition: Callable[[], bool], timeout_s: float, what: str, every_s: float = 0.1
) -> float:
    """Poll ``condition`` until true; return the monotonic time it became true.

    Raises ``DeadlineExceeded`` ("timed out after 30s waiting for <what>") at the deadline.
    """
    deadline = Deadline(timeout_s)
    while True:
        if condition():
            return time.monotonic()
        if deadline.expired():
            msg = f"timed out after {timeout_s:.0f}s waiting for {what}"
            raise DeadlineExceeded(msg)
        time.sleep(min(every_s, deadline.remaining()) or every_s)
