"""The web server's pure parts: which windows count as released, the page payloads, access."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import h3

from broker.web.access import readable_views
from broker.web.feed import ReleaseBook
from broker.web.payload import (
    map_kind,
    measure_columns,
    suppressed_share,
    view_summary,
    window_groups,
)
from broker.web.server import WebConfig, _csp
from tests.analysts.rows import LYON, QUARTER, T0, group, load_example, report


def test_groups_wait_for_their_report_and_a_re_emitted_window_counts_once(
    tmp_path: Path,
) -> None:
    cells = [h3.latlng_to_cell(lat, lon, 8) for lat, lon in LYON]
    book = ReleaseBook()
    first = group(T0, {"cell": cells[0]}, {"events": 14, "vehicles": 12})
    second = group(T0, {"cell": cells[1]}, {"events": 11, "vehicles": 10})
    assert book.add(first) is None and book.add(second) is None
    assert book.windows() == []  # not released before its report
    assert book.add(report(T0, 2, 3)) == (T0, T0 + QUARTER)
    assert [len(w.groups) for w in book.windows()] == [2]
    book.add(first)  # a re-emitted window: same keys
    book.add(report(T0, 2, 3))
    released = book.window(T0)
    assert released is not None and len(released.groups) == 2
    assert book.window(T0 + QUARTER) is None


def test_the_share_suppressed_is_of_groups_and_unknown_for_noised_views() -> None:
    assert suppressed_share(report(T0, 2, 3)) == 3 / 5
    assert suppressed_share(report(T0, 0, 0)) == 0.0
    assert suppressed_share(replace(report(T0, 4, 0), groups_suppressed=None)) is None


def test_payloads_carry_geometry_terms_and_stable_ranges(tmp_path: Path) -> None:
    contract = load_example(tmp_path, "micromobility")
    view = contract.view("availability")
    cells = [h3.latlng_to_cell(lat, lon, 8) for lat, lon in LYON]
    book = ReleaseBook()
    for row in (
        group(T0, {"cell": cells[0]}, {"events": 14, "vehicles": 12}),
        report(T0, 1, 3),
        group(T0 + QUARTER, {"cell": cells[1]}, {"events": 30, "vehicles": float("nan")}),
        report(T0 + QUARTER, 1, 0),
    ):
        book.add(row)
    summary = view_summary(contract, view, book.windows())
    assert summary["view"]["map"] == "areas"
    assert [m["name"] for m in summary["view"]["measures"]] == ["events", "vehicles"]
    assert summary["ranges"] == {"events": [14.0, 30.0], "vehicles": [12.0, 12.0]}
    assert [w["suppressed_share"] for w in summary["windows"]] == [0.75, 0.0]
    assert summary["contract"]["licence"] == contract.licence
    assert summary["territory"] and len(summary["territory"][0]) >= 4
    window = book.window(T0 + QUARTER)
    assert window is not None
    shown = window_groups(contract, view, window)
    assert shown["groups"][0]["geometry"]["type"] == "Polygon"
    assert shown["groups"][0]["measures"]["vehicles"] is None  # NaN is no JSON number
    json.dumps(shown, allow_nan=False)
    od = contract.view("origin_destination")
    assert map_kind(od) == "lines"
    assert {m["name"] for m in measure_columns(od)}.isdisjoint(d.name for d in od.group_by)


def test_a_view_is_readable_only_when_the_broker_lists_its_topic(tmp_path: Path) -> None:
    contract = load_example(tmp_path, "micromobility")
    topic = contract.topic_public("availability")
    refs = readable_views([contract], {topic, "public.other.view", "raw.x.y"})
    assert [(r.contract.id, r.view.name) for r in refs] == [(contract.id, "availability")]
    assert readable_views([contract], set()) == []


def test_the_page_policy_allows_only_its_own_origin_and_the_tile_server() -> None:
    assert "img-src 'self' data:;" in _csp(WebConfig())
    policy = _csp(WebConfig(tile_url="https://tiles.example.org/{z}/{x}/{y}.png"))
    assert "img-src 'self' data: https://tiles.example.org;" in policy
    assert "script-src 'self'" in policy and "default-src 'self'" in policy
