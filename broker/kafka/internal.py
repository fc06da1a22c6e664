"""The record formats of respublica's internal topics, shared by the worker (which writes
them) and the audit (which reads them on its own): keys, control headers, checkpoints.

``respublica.<c>.partials.<v>``::

    partials|<source>|<position>|<n>   [source, [partial, ...]]: up to 1,000 partials
    checkpoint|<source>                {"position", "watermark", "eos", "state", "counts", ...}

A partial is positional (``encode_partials``): ``[window_start, group, through, events,
subjects, distinct, sums, counts, values]``.

(``watermark`` is the source's fold watermark, also after its end of stream; ``eos`` says the
stream ended.)

``respublica.<c>.state``: ``merger|<view>`` (the merger's snapshot) and
``accounting|<view>|<window_start>`` (one per released window).

A raw record with header ``respublica.control: end-of-stream`` ends a source's stream. One
with ``respublica.control: watermark`` and ``respublica.watermark: <ms>`` (a *heartbeat*,
written by the ingest side to every raw partition, ``docs/architecture.md`` "Idle
partitions") says that no later record of that partition has an event time below ``<ms>``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson

from policies.aggregate import Partial
from policies.linked import atom_from_json, atom_to_json

CONTROL_HEADER = "respublica.control"
END_OF_STREAM_MARK = b"end-of-stream"
WATERMARK_MARK = b"watermark"
WATERMARK_HEADER = "respublica.watermark"
CHECKPOINT_PREFIX = b"checkpoint|"
PARTIALS_PREFIX = b"partials|"
ACCOUNTING_PREFIX = b"accounting|"


def heartbeat_headers(floor_ms: int) -> list[tuple[str, bytes]]:
    """The headers of a heartbeat: no later record here has an event time below ``floor_ms``."""
    return [(CONTROL_HEADER, WATERMARK_MARK), (WATERMARK_HEADER, str(floor_ms).encode())]


def heartbeat_floor(headers: Any) -> int | None:
    """The event-time floor a heartbeat's headers assert; None for any other record."""
    if not any(k == CONTROL_HEADER and v == WATERMARK_MARK for k, v in headers):
        return None
    for key, value in headers:
        if key == WATERMARK_HEADER:
            try:
                return int(value)
            except ValueError:
                return None
    return None


@dataclass(frozen=True)
class Checkpoint:
    """A decoded checkpoint record."""

    view: str
    source: str
    position: int
    watermark: int
    eos: bool
    state: dict[str, Any]
    written_at: float = 0.0
    counts: dict[str, int] = field(default_factory=dict)
    """Cumulative dispositions of the source's records up to ``position`` (for the audit)."""

    @classmethod
    def from_value(cls, view: str, value: bytes) -> Checkpoint:
        """Parse the JSON value of a ``checkpoint|<source>`` record."""
        data = orjson.loads(value)
        counts = {str(k): int(v) for k, v in data.get("counts", {}).items()}
        return cls(
            view,
            data["source"],
            int(data["position"]),
            int(data["watermark"]),
            bool(data["eos"]),
            data["state"],
            float(data.get("written_at", 0.0)),
            counts,
        )


def source_name(partition: int) -> str:
    """The merger's name of a raw partition."""
    return f"p{partition}"


def checkpoint_key(source: str) -> bytes:
    """The record key of a source's checkpoint (one per source: compaction keeps the last)."""
    return CHECKPOINT_PREFIX + source.encode()


def partials_key(source: str, position: int, chunk: int) -> bytes:
    """``partials|<source>|<position>|<chunk>``: deterministic, so a replay writes the same."""
    return PARTIALS_PREFIX + f"{source}|{position}|{chunk}".encode()


def encode_partials(source: str, partials: Sequence[Partial]) -> bytes:
    """The value of a ``partials|…`` record: ``[source, [partial, ...]]``, each partial a list
    of its fields in a fixed order (module docstring), sets as sorted lists (a replay writes
    the same bytes), empty measure maps as 0.

    Not ``Partial.to_dict``: a dict per partial repeated ten keys in every partial, and
    building, writing and parsing them was a fifth of a worker's CPU (issue 17).
    """
    rows = [
        [
            p.window_start,
            p.group,
            p.through,
            p.events,
            sorted(p.subjects),
            {f: sorted(s) for f, s in p.distinct.items()} if p.distinct else 0,
            p.sums or 0,
            p.counts or 0,
            p.values or 0,
            _links(p) if p.links else 0,
        ]
        for p in partials
    ]
    return orjson.dumps([source, rows])


def _links(partial: Partial) -> list[Any]:
    """A linked view's atoms (``Partial.links``), sorted as ``Partial.to_dict`` sorts them."""
    return sorted(
        ([atom_to_json(atom), sorted(subjects)] for atom, subjects in partial.links.items()),
        key=lambda pair: orjson.dumps(pair[0]),
    )


def decode_partials(value: bytes) -> list[Partial]:
    """The partials of an ``encode_partials`` value."""
    source, rows = orjson.loads(value)
    out = []
    for row in rows:
        window_start, group, through, events, subjects, distinct, sums, counts, values, links = row
        part = Partial(int(window_start), tuple(group), str(source))
        part.through, part.events, part.subjects = int(through), int(events), set(subjects)
        if distinct:
            part.distinct = {f: set(s) for f, s in distinct.items()}
        if sums:
            part.sums = {f: [float(x) for x in p] for f, p in sums.items()}
        if counts:
            part.counts = {f: int(n) for f, n in counts.items()}
        if values:
            part.values = {f: [float(x) for x in v] for f, v in values.items()}
        if links:
            part.links = {atom_from_json(a): set(s) for a, s in links}
        out.append(part)
    return out


def state_key(view: str) -> bytes:
    """The key of a view's merger snapshot on the state topic."""
    return f"merger|{view}".encode()


ACCOUNTING_PREFIX = b"accounting|"


def accounting_key(view: str, window_start: int) -> bytes:
    """``accounting|<view>|<window_start>``: one per released window, kept by compaction."""
    return ACCOUNTING_PREFIX + f"{view}|{window_start}".encode()
