"""A view's releases kept in memory and followed live: what the web pages draw.

``ViewFeed`` runs ``broker.kafka.public_reader.follow_view`` in a thread as the web server's
principal, from the beginning of ``public.<c>.<v>``, and keeps per *released* window (one whose
suppression report is committed) its report and its groups. Groups arrive before their
window's report (one transaction per window); they wait in ``_pending`` until it comes, so a
page never shows a window that is not released. ``follow_view`` already drops records of
another policy hash. A re-emitted window (same keys) overwrites itself: nothing is counted
twice.

Memory is the view's published history (groups of released windows), the same as an export
holds; a lost connection restarts the follower from the beginning and the keys deduplicate.
Every change calls ``on_release(window)`` from the feed's thread.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field

from kafka.errors import KafkaError

from broker.kafka.public_reader import PublishedGroup, WindowReport, follow_view
from broker.kafka.settings import KafkaSettings
from contracts.errors import RespublicaError
from contracts.model import Contract, View

log = logging.getLogger(__name__)
Window = tuple[int, int]
RETRY_S = (1.0, 2.0, 5.0, 10.0, 30.0)


@dataclass
class Released:
    """One released window: its suppression report and its published groups, by group key."""

    report: WindowReport
    groups: dict[str, PublishedGroup] = field(default_factory=dict)


def group_key(group: PublishedGroup) -> str:
    """The group's identity within its window (canonical JSON of its dimension values)."""
    return json.dumps(group.group, sort_keys=True, separators=(",", ":"))


class ReleaseBook:
    """Released windows of one view, built from rows in topic order (thread-safe)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._released: dict[Window, Released] = {}
        self._pending: dict[Window, dict[str, PublishedGroup]] = {}
        self.version = 0

    def add(self, row: PublishedGroup | WindowReport) -> Window | None:
        """Take one row; returns the window whose released contents changed, if any."""
        window = (row.window_start, row.window_end)
        with self._lock:
            released = self._released.get(window)
            if isinstance(row, PublishedGroup):
                if released is None:
                    self._pending.setdefault(window, {})[group_key(row)] = row
                    return None
                released.groups[group_key(row)] = row
            else:
                groups = self._pending.pop(window, {})
                if released is not None:
                    groups = {**released.groups, **groups}
                self._released[window] = Released(row, groups)
            self.version += 1
            return window

    def windows(self) -> list[Released]:
        """Every released window, in time order (copies: the feed's thread goes on adding)."""
        with self._lock:
            return [_copy(self._released[w]) for w in sorted(self._released)]

    def count(self) -> int:
        """How many windows are released."""
        with self._lock:
            return len(self._released)

    def window(self, start_ms: int) -> Released | None:
        """The released window starting at ``start_ms`` (a copy)."""
        with self._lock:
            found = next((r for w, r in self._released.items() if w[0] == start_ms), None)
            return None if found is None else _copy(found)


def _copy(released: Released) -> Released:
    return Released(released.report, dict(released.groups))


class ViewFeed:
    """Follows one view in a daemon thread; ``book`` holds what it has read so far."""

    def __init__(
        self,
        kafka: KafkaSettings,
        contract: Contract,
        view: View,
        on_release: Callable[[Window], None] | None = None,
    ) -> None:
        self.contract = contract
        self.view = view
        self.book = ReleaseBook()
        self.error: str | None = None
        self._kafka = kafka
        self._on_release = on_release or (lambda _window: None)
        self._stop = threading.Event()
        self._thread = threading.Thread(
            target=self._run, name=f"web-feed-{contract.id}-{view.name}", daemon=True
        )

    def start(self) -> None:
        """Start following."""
        self._thread.start()

    def stop(self, timeout_s: float = 5.0) -> None:
        """Stop following (the consumer closes between two polls)."""
        self._stop.set()
        self._thread.join(timeout_s)

    def _run(self) -> None:
        attempt = 0
        while not self._stop.is_set():
            try:
                rows = follow_view(
                    self._kafka,
                    self.contract,
                    self.view,
                    poll_timeout_s=0.5,
                    stop=self._stop.is_set,
                )
                for row in rows:
                    self.error = None
                    attempt = 0
                    window = self.book.add(row)
                    if window is not None:
                        self._on_release(window)
            except (RespublicaError, KafkaError) as exc:
                # The class name only: a Kafka error's text may quote what the broker returned.
                self.error = f"cannot read {self.contract.topic_public(self.view)}: " + (
                    str(exc) if isinstance(exc, RespublicaError) else type(exc).__name__
                )
                log.warning("%s", self.error)
            delay = RETRY_S[min(attempt, len(RETRY_S) - 1)]
            attempt += 1
            self._stop.wait(delay)
