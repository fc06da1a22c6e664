"""The demo's PNG map: its words come from the view, and its legend carries numbers."""

from __future__ import annotations

from pathlib import Path

import h3
import pytest
from PIL import Image

from broker.analysts.map import (
    RAMP,
    SIZE,
    cell_means,
    describe_map,
    legend_ticks,
    render,
    tick_label,
)
from tests.analysts.rows import LYON, load_example

pytestmark = pytest.mark.unit


def test_the_title_says_what_the_view_counts(tmp_path: Path) -> None:
    contract = load_example(tmp_path, "micromobility")
    view = contract.view("availability")
    text = describe_map(contract, view, "vehicles", windows=87)
    words = " ".join((text.title, text.subtitle, text.colour, text.legend, text.note))
    # The view counts vehicles *becoming* available, not the vehicles available.
    assert "mean available" not in words
    assert text.subtitle == view.description
    assert "becoming available" in text.subtitle
    assert "mean vehicles (distinct vehicle_id, exact) per 15-minute window" in text.colour
    assert "87 windows" in text.colour
    assert "k = 10" in text.note and "never" in text.note


def test_the_legend_runs_from_zero_to_the_darkest_value() -> None:
    assert legend_ticks(24.0) == [0.0, 6.0, 12.0, 18.0, 24.0]
    assert [tick_label(v) for v in legend_ticks(23.0)] == ["0", "5.8", "11.5", "17.2", "23"]


def test_the_map_has_a_colour_bar_from_the_lightest_to_the_darkest(tmp_path: Path) -> None:
    contract = load_example(tmp_path, "micromobility")
    text = describe_map(contract, contract.view("availability"), "vehicles", windows=2)
    cells = [h3.latlng_to_cell(lat, lon, 8) for lat, lon in LYON]
    means = cell_means([(cells[0], 12.0), (cells[0], 14.0), (cells[1], 24.0)])
    assert means == {cells[0]: 13.0, cells[1]: 24.0}
    out = tmp_path / "map.png"
    render(means, contract.territory.bbox or (0, 0, 1, 1), out, text)
    image = Image.open(out).convert("RGB")
    assert image.size == (SIZE, SIZE)
    colours = {image.getpixel((x, y)) for x in range(SIZE) for y in range(60, 90)}
    assert RAMP[0] in colours and RAMP[-1] in colours  # both ends of the bar are drawn
