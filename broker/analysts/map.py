"""A PNG map of a published H3 view: one hexagon per cell, coloured by a measure's mean.

Drawn with Pillow on an equirectangular projection of the contract's territory; only
published (k-anonymous) groups are drawn, so the map shows nothing a release does not. The
title comes from the view (its description and the measure drawn), and the legend is a colour
bar with numbers: what a colour means can be read off the image alone.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import h3
from PIL import Image, ImageDraw, ImageFont

from contracts.durations import format_duration
from contracts.model import (
    Contract,
    CountMeasure,
    DistinctMeasure,
    DistinctSubjectsMeasure,
    MeanMeasure,
    SumMeasure,
    View,
)

SIZE = 900
MARGIN = 40
HEADER = 96  # room for the three title lines and the legend
FOOTER = 36
BAR_WIDTH = 260
TICKS = 5
# A sequential yellow→red ramp (colour-blind safe enough for one variable).
RAMP = ((255, 255, 204), (254, 217, 118), (253, 141, 60), (227, 26, 28), (128, 0, 38))
Font = ImageFont.ImageFont | ImageFont.FreeTypeFont


@dataclass(frozen=True)
class MapText:
    """The words on a map: what it shows, what a colour means, and a note at the foot."""

    title: str
    subtitle: str
    colour: str
    legend: str
    note: str


def describe_map(contract: Contract, view: View, measure: str, windows: int) -> MapText:
    """The map's text from the view: its description, and what the measure counts.

    A cell's colour is the mean of the measure over the windows in which the cell was
    published: a window where it was suppressed is unknown, never counted as zero.
    """
    spec = next(m for m in view.measures if m.name == measure)
    what = _measure_words(contract, view, spec)
    window = _window_words(view)
    exact = "with differential-privacy noise" if view.noise is not None else "exact"
    return MapText(
        title=f"{contract.title}: {view.name}",
        subtitle=view.description or view.name,
        colour=(
            f"Colour: mean {measure} ({what}, {exact}) per {window} window in which the cell "
            f"was published ({windows} windows released)"
        ),
        legend=f"mean {measure} per window:",
        note=f"k = {view.k}: cells below k in a window are never drawn nor counted as 0",
    )


def _measure_words(contract: Contract, view: View, spec: object) -> str:
    subject = contract.stream(view.stream).subject
    if isinstance(spec, CountMeasure):
        return "events"
    if isinstance(spec, DistinctSubjectsMeasure):
        return f"distinct {subject}"
    if isinstance(spec, DistinctMeasure):
        return f"distinct {spec.field}"
    if isinstance(spec, SumMeasure):
        return f"sum of {spec.field}"
    if isinstance(spec, MeanMeasure):
        return f"mean of {spec.field}"
    return "measure"


def _window_words(view: View) -> str:
    minutes = view.window.total_seconds() / 60
    if minutes < 60 and minutes.is_integer():
        return f"{int(minutes)}-minute"
    return format_duration(view.window)


def _colour(share: float) -> tuple[int, int, int]:
    share = min(max(share, 0.0), 1.0) * (len(RAMP) - 1)
    low = int(share)
    high = min(low + 1, len(RAMP) - 1)
    t = share - low
    return tuple(round(a + (b - a) * t) for a, b in zip(RAMP[low], RAMP[high], strict=True))  # type: ignore[return-value]


def cell_means(rows: Iterable[tuple[str, float]]) -> dict[str, float]:
    """Mean of the measure per cell over the published windows."""
    sums: dict[str, float] = defaultdict(float)
    counts: dict[str, int] = defaultdict(int)
    for cell, value in rows:
        sums[cell] += value
        counts[cell] += 1
    return {cell: sums[cell] / counts[cell] for cell in sums}


def legend_ticks(top: float, ticks: int = TICKS) -> list[float]:
    """``ticks`` evenly spaced values from 0 to ``top`` (the colour scale's ends)."""
    return [top * i / (ticks - 1) for i in range(ticks)]


def tick_label(value: float) -> str:
    """``12`` for whole numbers, ``12.5`` otherwise (one decimal)."""
    return f"{value:.0f}" if float(value).is_integer() else f"{value:.1f}"


def _font(size: int) -> Font:
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1: the fixed bitmap font
        return ImageFont.load_default()


def render(
    means: dict[str, float], bbox: tuple[float, float, float, float], out: Path, text: MapText
) -> None:
    """Write the map of ``means`` (cell → value) over ``bbox`` (lon/lat) to ``out``."""
    west, south, east, north = bbox
    # Equirectangular with a true aspect: a degree of longitude is cos(lat) of one of latitude.
    shrink = math.cos(math.radians((south + north) / 2))
    side = SIZE - HEADER - FOOTER
    scale = (side - 2 * MARGIN) / max((east - west) * shrink, north - south)
    left = (SIZE - (east - west) * shrink * scale) / 2

    def xy(lat: float, lon: float) -> tuple[float, float]:
        return left + (lon - west) * shrink * scale, SIZE - FOOTER - MARGIN - (lat - south) * scale

    image = Image.new("RGB", (SIZE, SIZE), (246, 246, 246))
    draw = ImageDraw.Draw(image)
    draw.rectangle([xy(north, west), xy(south, east)], outline=(90, 90, 90), width=2)
    top = max(means.values(), default=1.0) or 1.0
    for cell, value in sorted(means.items()):
        ring = [xy(lat, lon) for lat, lon in h3.cell_to_boundary(cell)]
        draw.polygon(ring, fill=_colour(value / top), outline=(120, 120, 120))
    ink = (20, 20, 20)
    draw.text((MARGIN - 20, 8), text.title, fill=ink, font=_font(18))
    draw.text((MARGIN - 20, 32), text.subtitle, fill=ink, font=_font(14))
    draw.text((MARGIN - 20, 52), text.colour, fill=ink, font=_font(12))
    label = _font(12)
    draw.text((MARGIN - 20, 70), text.legend, fill=ink, font=label)
    _legend(draw, top, (MARGIN - 10 + round(draw.textlength(text.legend, font=label)), 72))
    footer = f"{len(means)} cells with published groups; {text.note}"
    draw.text((MARGIN - 20, SIZE - 26), footer, fill=ink, font=_font(12))
    out.parent.mkdir(parents=True, exist_ok=True)
    image.save(out)


def _legend(draw: ImageDraw.ImageDraw, top: float, at: tuple[int, int]) -> None:
    """A continuous colour bar from 0 to ``top`` with numbered ticks under it."""
    x0, y0 = at
    height = 10
    for dx in range(BAR_WIDTH):
        draw.line([(x0 + dx, y0), (x0 + dx, y0 + height)], fill=_colour(dx / (BAR_WIDTH - 1)))
    draw.rectangle([x0 - 1, y0 - 1, x0 + BAR_WIDTH, y0 + height + 1], outline=(90, 90, 90))
    font = _font(11)
    for value in legend_ticks(top):
        x = x0 + round((BAR_WIDTH - 1) * value / top)
        draw.line([(x, y0 + height + 1), (x, y0 + height + 4)], fill=(60, 60, 60))
        draw.text(
            (x, y0 + height + 5), tick_label(value), fill=(20, 20, 20), font=font, anchor="ma"
        )
