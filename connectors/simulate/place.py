"""Put simulated records at another time and place: ``--start now`` and ``--contract FILE``.

``Retiming`` maps simulated times onto the wall clock so that the newest event lands just
before *now* and the whole run fits in a span (the tightest allowed lateness of the streams
sent, halved for the time the push itself takes): a simulated hour that would not fit is
compressed, monotonically, so every subject's records keep their order. Times of one record
move together; durations written as numbers (``duration_s``) keep their simulated value.

``BoxMap`` maps positions linearly from the example contract's territory box into another
contract's, so a simulator can feed a custom contract with the same streams. For a polygon
territory the box is the polygon's: points of the box outside the polygon are rejected as
``OUTSIDE_TERRITORY``, as real ones would be.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass

from connectors.simulate.base import SimRecord

Box = tuple[float, float, float, float]  # west, south, east, north
TimeFields = Mapping[str, tuple[str, ...]]
PositionFields = Mapping[str, tuple[tuple[str, str], ...]]
COORDINATE_DECIMALS = 6


@dataclass(frozen=True)
class Retiming:
    """``t -> end_ms - (latest_ms - t) * factor``: the newest time lands on ``end_ms``."""

    latest_ms: int
    end_ms: int
    factor: float
    simulated_span_ms: int

    @classmethod
    def ending_at(cls, event_times: Iterable[int], end_ms: int, max_span_ms: int) -> Retiming:
        """The map for records whose event times are ``event_times``, into
        ``[end_ms - max_span_ms, end_ms]`` (compressed only when they do not fit)."""
        earliest = latest = None
        for time_ms in event_times:
            earliest = time_ms if earliest is None else min(earliest, time_ms)
            latest = time_ms if latest is None else max(latest, time_ms)
        if earliest is None or latest is None:
            return cls(end_ms, end_ms, 1.0, 0)
        span = latest - earliest
        factor = 1.0 if span <= max_span_ms else max(0, max_span_ms) / span
        return cls(latest, end_ms, factor, span)

    @property
    def span_ms(self) -> int:
        """How long the retimed run lasts on the wall clock."""
        return round(self.simulated_span_ms * self.factor)

    def __call__(self, time_ms: int) -> int:
        return self.end_ms - round((self.latest_ms - time_ms) * self.factor)


def retimed(
    records: Iterable[SimRecord], timing: Retiming, time_fields: TimeFields
) -> Iterator[SimRecord]:
    """The records with every time field mapped by ``timing``."""
    for stream, record in records:
        moved = {
            name: timing(record[name])
            for name in time_fields.get(stream, ())
            if isinstance(record.get(name), int)
        }
        yield SimRecord(stream, {**record, **moved}) if moved else SimRecord(stream, record)


@dataclass(frozen=True)
class BoxMap:
    """A linear map of ``(lat, lon)`` from one box onto another."""

    source: Box
    target: Box

    def __call__(self, lat: float, lon: float) -> tuple[float, float]:
        (sw, ss, se, sn), (tw, ts, te, tn) = self.source, self.target
        new_lon = tw + (lon - sw) * (te - tw) / (se - sw)
        new_lat = ts + (lat - ss) * (tn - ts) / (sn - ss)
        return round(new_lat, COORDINATE_DECIMALS), round(new_lon, COORDINATE_DECIMALS)


def relocated(
    records: Iterable[SimRecord], box_map: BoxMap, position_fields: PositionFields
) -> Iterator[SimRecord]:
    """The records with every position moved by ``box_map``."""
    for stream, record in records:
        moved: dict[str, float] = {}
        for lat_name, lon_name in position_fields.get(stream, ()):
            lat, lon = record.get(lat_name), record.get(lon_name)
            if isinstance(lat, int | float) and isinstance(lon, int | float):
                moved[lat_name], moved[lon_name] = box_map(float(lat), float(lon))
        yield SimRecord(stream, {**record, **moved}) if moved else SimRecord(stream, record)
