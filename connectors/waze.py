"""A Waze for Cities style feed (``alerts``, ``jams``) to ``alerts`` and ``jams`` records.

Alerts carry ``uuid``, ``pubMillis``, ``location {x: lon, y: lat}``, ``type``, ``subtype``,
``street``, ``reliability``; jams carry ``uuid``, ``pubMillis``, ``line [{x, y}, ...]``,
``speedKMH`` (or ``speed`` in m/s), ``length`` (m), ``delay`` (s), ``level``, ``roadType``,
``street``. A jam is placed at its head, the first point of ``line``.

The feed is already aggregated by the app: it has no user id. The contract's subject
(``reporter_id``) is therefore the report's own ``uuid``, so "distinct reporters" counts
distinct reports for feeds pulled this way. A report stays in the feed while it lasts:
``ReportTracker`` emits each uuid once, when first seen (a restart re-emits the current feed;
the validator's duplicate filter drops those repeats). Waze writes ``delay: -1`` for a closed
road; that is no delay in seconds, so such a jam is rejected as ``OUT_OF_RANGE`` at ``delay``.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any, TypeGuard

from broker.kafka.reasons import Reason, Stage
from connectors.base import ConnectorError, Rejected


@dataclass(frozen=True)
class Report:
    """One item of the feed: its stream, its uuid, and the record or the rejection."""

    stream: str
    uuid: str | None
    index: int
    record: dict[str, Any]
    rejected: Rejected | None = None


def parse_feed(doc: Any) -> Iterator[Report]:
    """Every alert and jam of a feed document, mapped to our records."""
    if not isinstance(doc, Mapping):
        msg = "Waze feed: not a JSON object"
        raise ConnectorError(msg)
    for index, item in enumerate(_items(doc, "alerts")):
        yield Report("alerts", _uuid(item), index, alert_record(item))
    for index, item in enumerate(_items(doc, "jams")):
        record = jam_record(item)
        delay = item.get("delay")
        rejected = (
            Rejected(Reason.OUT_OF_RANGE, "delay", Stage.SEMANTIC)
            if isinstance(delay, int | float) and delay < 0
            else None
        )
        yield Report("jams", _uuid(item), index, record, rejected)


def alert_record(item: Mapping[str, Any]) -> dict[str, Any]:
    """A Waze alert as an ``alerts`` record (missing fields stay missing)."""
    x, y = _xy(item.get("location"))
    record = _common(item, x, y)
    _put(record, "type", item.get("type"))
    subtype = item.get("subtype")
    record["subtype"] = subtype if subtype else None  # the feed writes "" for none
    record["street"] = item.get("street")
    _put(record, "reliability", item.get("reliability"))
    return record


def jam_record(item: Mapping[str, Any]) -> dict[str, Any]:
    """A Waze jam as a ``jams`` record, placed at the head of its line."""
    line = item.get("line")
    x, y = _xy(line[0]) if isinstance(line, list) and line else (None, None)
    record = _common(item, x, y)
    record["street"] = item.get("street")
    _put(record, "road_type", item.get("roadType"))
    _put(record, "length_m", _float(item.get("length")))
    _put(record, "delay_s", _float(item.get("delay")))
    speed = item.get("speedKMH")
    if speed is None and _is_number(item.get("speed")):
        speed = item["speed"] * 3.6  # m/s in the feed's "speed"
    _put(record, "speed_kmh", _float(speed))
    _put(record, "level", item.get("level"))
    return record


class ReportTracker:
    """Remembers the uuids of the previous poll, so each report is emitted once."""

    def __init__(self) -> None:
        self._previous: frozenset[str] = frozenset()

    def new(self, reports: list[Report]) -> list[Report]:
        """Reports whose uuid was not in the previous poll (reports without uuid: all)."""
        fresh = [r for r in reports if r.uuid is None or r.uuid not in self._previous]
        self._previous = frozenset(r.uuid for r in reports if r.uuid is not None)
        return fresh


def _common(item: Mapping[str, Any], x: Any, y: Any) -> dict[str, Any]:
    record: dict[str, Any] = {}
    _put(record, "event_id", item.get("uuid"))
    _put(record, "reporter_id", item.get("uuid"))
    _put(record, "timestamp", item.get("pubMillis"))
    _put(record, "lat", y)
    _put(record, "lon", x)
    return record


def _items(doc: Mapping[str, Any], key: str) -> list[Mapping[str, Any]]:
    items = doc.get(key) or []
    return [i for i in items if isinstance(i, Mapping)] if isinstance(items, list) else []


def _xy(point: Any) -> tuple[Any, Any]:
    return (point.get("x"), point.get("y")) if isinstance(point, Mapping) else (None, None)


def _uuid(item: Mapping[str, Any]) -> str | None:
    value = item.get("uuid")
    return value if isinstance(value, str) else None


def _float(value: Any) -> Any:
    return float(value) if _is_number(value) else value


def _is_number(value: Any) -> TypeGuard[int | float]:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _put(record: dict[str, Any], name: str, value: Any) -> None:
    if value is not None:
        record[name] = value
