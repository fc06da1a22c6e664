"""A PNG map of a published H3 view: one hexagon per cell, coloured by a measure's mean.

Drawn with Pillow on an equirectangular projection of the contract's territory; only
published (k-anonymous) groups are drawn, so the map shows nothing a release does not.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable
from pathlib import Path

import h3
from PIL import Image, ImageDraw

SIZE = 900
MARGIN = 40
# A sequential yellow→red ramp (colour-blind safe enough for one variable).
RAMP = ((255, 255, 204), (254, 217, 118), (253, 141, 60), (227, 26, 28), (128, 0, 38))


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


def render(
    means: dict[str, float], bbox: tuple[float, float, float, float], out: Path, title: str
) -> None:
    """Write the map of ``means`` (cell → value) over ``bbox`` (lon/lat) to ``out``."""
    west, south, east, north = bbox
    # Equirectangular with a true aspect: a degree of longitude is cos(lat) of one of latitude.
    shrink = math.cos(math.radians((south + north) / 2))
    scale = (SIZE - 2 * MARGIN) / max((east - west) * shrink, north - south)

    def xy(lat: float, lon: float) -> tuple[float, float]:
        return MARGIN + (lon - west) * shrink * scale, SIZE - MARGIN - (lat - south) * scale

    image = Image.new("RGB", (SIZE, SIZE), (246, 246, 246))
    draw = ImageDraw.Draw(image)
    draw.rectangle([xy(north, west), xy(south, east)], outline=(90, 90, 90), width=2)
    top = max(means.values(), default=1.0) or 1.0
    for cell, value in sorted(means.items()):
        ring = [xy(lat, lon) for lat, lon in h3.cell_to_boundary(cell)]
        draw.polygon(ring, fill=_colour(value / top), outline=(120, 120, 120))
    draw.text((MARGIN, 10), title, fill=(20, 20, 20))
    draw.text(
        (MARGIN, SIZE - 28),
        f"{len(means)} cells with published groups; "
        f"darkest = {top:.1f}; cells below k are never drawn",
        fill=(20, 20, 20),
    )
    for i, colour in enumerate(RAMP):
        draw.rectangle(
            [SIZE - MARGIN - (len(RAMP) - i) * 24, 8, SIZE - MARGIN - (len(RAMP) - i - 1) * 24, 24],
            fill=colour,
        )
    out.parent.mkdir(parents=True, exist_ok=True)
    image.save(out)
