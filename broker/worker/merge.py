"""Stage 2: one view's partials topic → releases on ``public.<c>.<v>``, committed with state.

The partials topic has one partition, so exactly one worker (the owner in the merger consumer
group) runs a view's ``MergeStage``. It merges partials, takes each source's watermark from its
checkpoints, and, when windows close (with events, or empty: ``policies.window``), returns one
``MergeOutput``: the public records of every
released window, its internal accounting (``accounting|<view>|<window_start>``: events
published and suppressed, for ``respublica audit``), then the merger's snapshot
(``merger|<view>`` on ``respublica.<c>.state``, holding the partials-topic position and the ε
ledger). The caller writes an output in ONE
Kafka transaction, so a window is published exactly when the state that says "released"
is: after a crash, the merger restores the last committed state and re-reads the partials
after its position, and re-releases with identical bytes (noise is keyed, not drawn).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Collection
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import orjson

from broker.kafka.internal import (
    CHECKPOINT_PREFIX,
    PARTIALS_PREFIX,
    accounting_key,
    decode_partials,
    state_key,
)
from broker.kafka.publish import OutRecord, ReleaseEncoder, canonical_json
from broker.worker.metrics import WorkerMetrics
from contracts.model import Contract
from contracts.policy_hash import short_policy_hash
from policies.base import END_OF_STREAM, NO_WATERMARK, PolicyError, Release
from policies.compile import CompiledView

_log = logging.getLogger(__name__)
DEFAULT_STATE_INTERVAL_S = 5.0


@dataclass(frozen=True)
class MergeOutput:
    """What to commit in one transaction: public records, accounting, the state record (last)."""

    records: list[OutRecord]
    releases: list[Release]
    published: int
    closing_at: float | None


class MergeStage:
    """Stage 2 of one view; plain Python, driven by ``broker.worker.loops``."""

    def __init__(
        self,
        contract: Contract,
        compiled: CompiledView,
        sources: Collection[str],
        state_topic: str,
        metrics: WorkerMetrics,
        *,
        clock: Callable[[], float] = time.time,
        state_interval_s: float = DEFAULT_STATE_INTERVAL_S,
    ) -> None:
        self.contract = contract
        self.policy_hash = short_policy_hash(contract)  # once: hashing a contract is not cheap
        self.view = compiled.view
        self.encoder = ReleaseEncoder(contract, contract.view(compiled.view))
        self.merger = compiled.merger(sources)
        self.sources = sorted(sources)
        self.state_topic = state_topic
        self.metrics = metrics
        self.clock = clock
        self.state_interval_s = state_interval_s
        self.position = -1
        self.unknown_sources = 0
        self._closing_at: float | None = None
        self._saved_position = -1
        self._saved_at = clock()

    def restore(self, value: bytes | None) -> int:
        """Load the last committed snapshot (None: start afresh); returns the offset to read."""
        if value is None:
            return 0
        data = orjson.loads(value)
        if sorted(data["sources"]) != self.sources:
            msg = (
                f"view {self.view}: the merger state covers {len(data['sources'])} "
                f"partitions, the stream has {len(self.sources)}; repartitioning a stream "
                "needs a new contract version and fresh state"
            )
            raise PolicyError(msg)
        self.merger.restore(data["merger"])
        self.position = self._saved_position = int(data["position"])
        return self.position + 1

    def feed(self, offset: int, key: bytes | None, value: bytes | None) -> None:
        """Fold one partials-topic record (a partial or a checkpoint) into the merger."""
        self.position = offset
        if key is None or value is None:
            return
        try:
            if key.startswith(PARTIALS_PREFIX):
                self.merger.merge(decode_partials(value))
            elif key.startswith(CHECKPOINT_PREFIX):
                self._watermark(orjson.loads(value))
        except PolicyError:
            # A source the merger does not know: the stream was repartitioned under it.
            self.unknown_sources += 1

    def _watermark(self, checkpoint: dict[str, Any]) -> None:
        before = min(self.merger.watermarks.values())
        source = checkpoint["source"]
        self.merger.observe_watermark(source, int(checkpoint["watermark"]))  # time passed
        if checkpoint["eos"]:
            self.merger.observe_watermark(source, END_OF_STREAM)
        if min(self.merger.watermarks.values()) > before:
            self._closing_at = float(checkpoint.get("written_at", 0.0)) or None

    def step(self, *, force_state: bool = False) -> MergeOutput | None:
        """Release closed windows; None when there is nothing to commit yet."""
        if min(self.merger.watermarks.values()) == NO_WATERMARK and not force_state:
            return None
        releases = self.merger.release_ready()
        records: list[OutRecord] = []
        active = self.contract.is_active(datetime.fromtimestamp(self.clock(), UTC))
        accounting: list[OutRecord] = []
        for release in releases:
            if active:
                records += self.encoder.records(release)
            else:  # outside the validity period nothing more is published
                self.metrics.withheld.labels(self.contract.id, self.view, "contract_inactive").inc()
            accounting.append(self._accounting(release, published=active))
        published = len(records)
        records += accounting  # internal: committed with the releases, read by the auditor
        due = (
            self.position > self._saved_position
            and self.clock() - self._saved_at >= self.state_interval_s
        )
        if not (releases or force_state or due):
            return None
        records.append(OutRecord(self.state_topic, state_key(self.view), self._state(), []))
        return MergeOutput(records, releases, published, self._closing_at)

    def _accounting(self, release: Release, *, published: bool) -> OutRecord:
        """The window's event totals, which the public report must not carry (noise)."""
        report = release.report
        value = canonical_json(
            {
                "view": self.view,
                "window_start": release.window.start,
                "window_end": release.window.end,
                "published": published,
                "k": report.k,
                "groups_published": report.groups_published,
                "groups_suppressed": report.groups_suppressed,
                "groups_secondary": report.groups_secondary,
                "events_published": report.events_published,
                "events_suppressed": report.events_suppressed,
                "withheld_reason": report.withheld_reason,
                "epsilon": release.epsilon,
                "policy_hash": self.policy_hash,
                "contract_version": self.contract.version,
            }
        )
        return OutRecord(
            self.state_topic, accounting_key(self.view, release.window.start), value, []
        )

    def _state(self) -> bytes:
        """``canonical_json`` of {position, sources, merger snapshot, policy hash, version},
        spliced by hand around the merger's own JSON (written with every release)."""
        head = canonical_json({"contract_version": self.contract.version})[:-1]
        tail = canonical_json(
            {"policy_hash": self.policy_hash, "position": self.position, "sources": self.sources}
        )[1:]
        # One join: the merger's snapshot runs to megabytes (issue 17, docs/benchmarks.md).
        return b"".join([head, b',"merger":', *self.merger.snapshot_chunks(), b",", tail])

    def _count_epsilon(self, release: Release) -> None:
        noise = self.contract.view(self.view).noise
        if noise is None:
            return
        labels = (self.contract.id, self.view)
        self.metrics.epsilon_budget.labels(*labels).set(noise.budget)
        period_ms = int(noise.period.total_seconds() * 1000)
        period = str(release.window.start // period_ms)
        self.metrics.epsilon_spent.labels(*labels, period).inc(release.epsilon)

    def committed(self, output: MergeOutput, at: float | None = None) -> None:
        """The output's transaction committed (at ``at``, default now): count it, remember
        what is saved."""
        now = self.clock() if at is None else at
        self._saved_position, self._saved_at = self.position, now
        labels = (self.contract.id, self.view)
        for release in output.releases:
            self.metrics.windows.labels(*labels).inc()
            self.metrics.groups_published.labels(*labels).inc(release.report.groups_published)
            self.metrics.groups_suppressed.labels(*labels).inc(release.report.groups_suppressed)
            if release.report.withheld_reason:
                self.metrics.withheld.labels(*labels, release.report.withheld_reason).inc()
            if output.closing_at is not None:
                self.metrics.delay.labels(*labels).observe(max(0.0, now - output.closing_at))
            if output.published:  # the data's age: from the window's first instant, in event time
                age = now - release.window.start / 1000
                self.metrics.end_to_end.labels(*labels).observe(max(0.0, age))
            self._count_epsilon(release)
        self.metrics.records_published.labels(*labels).inc(output.published)
        self.metrics.stale.labels(*labels).set(self.merger.stale_partials)
        self.metrics.open_windows.labels(*labels).set(self.merger.open_windows)
        if output.releases:
            _log.info(
                "released %d window(s) of %s/%s: %d record(s)",
                len(output.releases),
                self.contract.id,
                self.view,
                output.published,
            )
