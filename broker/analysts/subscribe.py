"""``respublica subscribe``: a view's releases as a live text table.

One line per published group (window, dimensions, measures), then the window's suppression
report, indented: ``k=10: 12 groups published, 3 suppressed``. Column widths are fixed from
the names, so lines printed minutes apart still line up.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from broker.analysts.export.table import flat_measures
from broker.kafka.public_reader import Row, WindowReport, iso_utc
from contracts.model import View

_MIN_WIDTH = 8
_WINDOW_WIDTH = 41  # "2026-03-01T08:00:00Z/2026-03-01T08:15:00Z"


def window_label(start_ms: int, end_ms: int) -> str:
    """``start/end`` in ISO 8601 UTC (the interval notation of ISO 8601)."""
    return f"{iso_utc(start_ms)}/{iso_utc(end_ms)}"


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.6g}"
    return str(value)


class ReleaseTable:
    """Formats the rows of one view as aligned text lines."""

    def __init__(self, view: View) -> None:
        self.view = view
        self.dimensions = [d.name for d in view.group_by]
        sample = flat_measures(view, {m.name: None for m in view.measures})
        self.measures = list(sample)
        # H3 cells are 15 characters; zone names vary: leave room for both.
        self.widths = [max(len(n), 16) for n in self.dimensions]
        self.widths += [max(len(n), _MIN_WIDTH) for n in self.measures]

    def header(self) -> str:
        """The column names."""
        return self._line("window", [*self.dimensions, *self.measures])

    def line(self, row: Row) -> str:
        """The line of a group, or the report line of a window."""
        if isinstance(row, WindowReport):
            return f"{'':{_WINDOW_WIDTH}}  {row.summary()}"
        values = flat_measures(self.view, row.measures)
        cells = [_cell(row.group.get(d)) for d in self.dimensions]
        cells += [_cell(values.get(m)) for m in self.measures]
        return self._line(window_label(row.window_start, row.window_end), cells)

    def _line(self, first: str, cells: list[str]) -> str:
        parts = [f"{first:<{_WINDOW_WIDTH}}"]
        parts += [
            f"{c:<{w}}" if i < len(self.dimensions) else f"{c:>{w}}"
            for i, (c, w) in enumerate(zip(cells, self.widths, strict=True))
        ]
        return "  ".join(parts).rstrip()


def print_releases(
    rows: Iterable[Row], view: View, emit: Callable[[str], None], *, max_windows: int | None = None
) -> int:
    """Print rows as they come; stop after ``max_windows`` reports. Returns windows seen."""
    table = ReleaseTable(view)
    emit(table.header())
    windows = 0
    for row in rows:
        emit(table.line(row))
        if isinstance(row, WindowReport):
            windows += 1
            if max_windows is not None and windows >= max_windows:
                break
    return windows
