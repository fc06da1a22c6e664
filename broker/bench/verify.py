"""Check what a view published against the batch oracle, in one canonical form.

Used by the worker tests and by ``respublica bench`` (a fast wrong answer is not a result):
``read_public`` reads ``public.<c>.<v>`` read_committed and decodes it; ``expected_windows``
runs ``policies.oracle.evaluate`` on the same events. Both give window → (rows, report).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from kafka import KafkaConsumer, TopicPartition

from broker.kafka.clients import read_partitions
from broker.kafka.publish import decode_public, public_schemas
from broker.kafka.settings import as_settings
from contracts.model import Contract
from policies.base import Release
from policies.oracle import evaluate
from policies.pseudonymise import KeyRing


def _num(value: Any) -> Any:
    if isinstance(value, float):
        return round(value, 6) if math.isfinite(value) else repr(value)
    if isinstance(value, list):
        return tuple(_num(v) for v in value)
    return value


def _group_row(group: Mapping[str, Any], measures: Mapping[str, Any]) -> tuple[Any, ...]:
    dims = tuple(sorted((k, None if v is None else str(v)) for k, v in group.items()))
    return dims, tuple(sorted((k, _num(v)) for k, v in measures.items()))


REPORT_FIELDS = ("k", "groups_published", "groups_suppressed", "withheld_reason")


def oracle_windows(
    releases: Iterable[Release], *, noised: bool = False
) -> dict[tuple[int, int], Any]:
    """Canonical form of oracle releases: window → (sorted group rows, report), as published
    (a noised view's report leaves ``groups_suppressed`` out)."""
    out = {}
    for release in releases:
        data = release.to_dict()
        rows = sorted(_group_row(g["group"], g["measures"]) for g in data["groups"])
        public = {**data["report"], **({"groups_suppressed": None} if noised else {})}
        report = tuple(public[k] for k in REPORT_FIELDS) + (_num(data["epsilon"]),)
        out[(data["window_start"], data["window_end"])] = (rows, report)
    return out


@dataclass
class PublicView:
    """What a read_committed consumer saw on a public topic."""

    records: int = 0
    keys: list[bytes] = field(default_factory=list)
    windows: dict[tuple[int, int], Any] = field(default_factory=dict)
    headers: list[dict[str, bytes]] = field(default_factory=list)
    values: list[tuple[bytes, bytes]] = field(default_factory=list)
    last_timestamp_ms: int = 0  # the newest record's timestamp (when the worker sent it)

    @property
    def duplicates(self) -> int:
        """Records whose key was already seen (a window published twice)."""
        return len(self.keys) - len(set(self.keys))


def read_public(
    bootstrap: str,
    contract: Contract,
    view: str,
    *,
    isolation: str = "read_committed",
    timeout_s: float = 30.0,
) -> PublicView:
    """Every record of ``public.<c>.<v>`` so far, decoded into the canonical form."""
    schemas = public_schemas([contract])
    dims = [d.name for d in contract.view(view).group_by]
    consumer = KafkaConsumer(
        **as_settings(bootstrap).kafka_python("verify"),
        enable_auto_commit=False,
        isolation_level=isolation,
        group_id=None,
    )
    tp = TopicPartition(contract.topic_public(view), 0)
    seen = PublicView()
    rows: dict[tuple[int, int], list[Any]] = {}
    reports: dict[tuple[int, int], Any] = {}
    try:
        for records in read_partitions(consumer, [tp], timeout_s=timeout_s).values():
            for r in records:
                seen.records += 1
                seen.last_timestamp_ms = max(seen.last_timestamp_ms, r.timestamp)
                seen.keys.append(r.key)
                seen.headers.append(dict(r.headers))
                seen.values.append((r.key, r.value))
                key, row = decode_public(r.key, r.value, schemas)
                window = (key["window_start"], key["window_end"])
                if key.get("report"):
                    reports[window] = tuple(row[k] for k in REPORT_FIELDS) + (_num(row["epsilon"]),)
                else:
                    measures = {
                        k: v
                        for k, v in row.items()
                        if k not in dims and not k.startswith("window_")
                    }
                    rows.setdefault(window, []).append(
                        _group_row({d: row[d] for d in dims}, measures)
                    )
    finally:
        consumer.close()
    for window, report in reports.items():
        seen.windows[window] = (sorted(rows.get(window, [])), report)
    return seen


def expected_windows(
    contract: Contract,
    events: Mapping[str, list[dict[str, Any]]],
    view: str,
    noise_key: bytes | None = None,
    watermarks: Mapping[str, int] | None = None,
) -> dict[tuple[int, int], Any]:
    """The oracle's releases of one view, in canonical form (``watermarks``: stream → how far
    time has passed, for the empty windows after the last event)."""
    releases = evaluate(
        contract, events, keyring=KeyRing(), noise_key=noise_key, watermarks=watermarks
    )
    return oracle_windows(releases[view], noised=contract.view(view).noise is not None)
