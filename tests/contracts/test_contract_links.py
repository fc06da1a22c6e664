"""Linked views: which views' totals add up, how ``contracts show`` explains it, and the
warnings of ``contracts validate`` (``contracts.links``)."""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from contracts import examples_dir, load_contracts
from contracts.cli import show, validate
from contracts.links import link_warnings, linked_set_of, linked_sets, links
from contracts.model import Contract
from tests.contracts.conftest import ContractWriter, ExampleFactory

pytestmark = pytest.mark.unit


def load(write_contract: ContractWriter, data: dict[str, Any], now: datetime) -> Contract:
    return load_contracts([write_contract(data)], now=now)[0]


def test_of_the_examples_only_the_rentals_views_are_linked(now: datetime) -> None:
    found = {c.id: c for c in load_contracts([examples_dir()], now=now)}
    assert links(found["lyon-micromobility"]) == []  # two streams: nothing adds up
    assert links(found["bordeaux-navigation"]) == []
    (link,) = links(found["paris-str"])
    assert (link.first, link.second, link.protected, link.warning) == (
        "nights_by_district",
        "nights_by_cell",
        True,
        None,
    )
    assert link.measures == (
        "sum of nights",
        "sum of guests",
        "distinct subjects",
        "number of records",
    )
    assert link.relation.startswith("their totals are equal over the whole window; district")
    assert linked_set_of(found["paris-str"], "nights_by_cell") == (
        "nights_by_district",
        "nights_by_cell",
    )
    assert linked_set_of(found["lyon-micromobility"], "availability") == ()


def test_show_explains_the_links(now: datetime) -> None:
    text = " ".join(show("paris-str", [examples_dir()], now=now).split())
    assert "LINKED VIEWS" in text
    assert "nights_by_district and nights_by_cell: their totals are equal over the whole" in text
    assert "Released together" in text and "secondary suppression" in text
    other = " ".join(show("lyon-micromobility", [examples_dir()], now=now).split())
    assert "LINKED VIEWS (totals that add up across views) None" in other


def _second_view(data: dict[str, Any], **changes: Any) -> dict[str, Any]:
    """Micromobility with a second view of vehicle_events, like availability but ``changes``."""
    view = json.loads(json.dumps(data["views"][0]))
    view.update(name="availability_2", **changes)
    data["views"] = [data["views"][0], view]
    data["consumers"] = []
    return data


def test_h3_children_and_fewer_group_by_fields_are_explained(
    example_factory: ExampleFactory, write_contract: ContractWriter, now: datetime
) -> None:
    h3 = {"type": "h3", "name": "cell", "lat": "lat", "lon": "lon", "resolution": 9}
    data = _second_view(example_factory("micromobility"), group_by=[h3])
    (link,) = links(load(write_contract, data, now))
    assert link.protected
    assert "per cell (H3 cells at resolution 9 nest approximately in their parent at 7)" in (
        link.relation
    )
    data = _second_view(example_factory("micromobility"), group_by=[])
    (link,) = links(load(write_contract, data, now))
    assert link.relation == (
        "their totals are equal over the whole window; availability also groups by cell"
    )


def test_zones_inside_zones_are_explained(
    example_factory: ExampleFactory, write_contract: ContractWriter, tmp_path: Path, now: datetime
) -> None:
    districts = json.loads((examples_dir() / "zones/paris-districts.geojson").read_text())
    halves = []
    for feature in districts["features"]:
        (ring,) = feature["geometry"]["coordinates"]
        west, east = ring[0][0], ring[1][0]
        south, north = ring[0][1], ring[2][1]
        middle = (west + east) / 2
        for name, (w, e) in (("a", (west, middle)), ("b", (middle, east))):
            box = [[w, south], [e, south], [e, north], [w, north], [w, south]]
            halves.append(
                {
                    "type": "Feature",
                    "properties": {"quarter": f"{feature['properties']['district']}-{name}"},
                    "geometry": {"type": "Polygon", "coordinates": [box]},
                }
            )
    (tmp_path / "quarters.geojson").write_text(
        json.dumps({"type": "FeatureCollection", "features": halves})
    )
    data = example_factory("rentals")
    cells = data["views"][1]
    cells["group_by"] = [
        {
            "type": "zones",
            "name": "quarter",
            "lat": "lat",
            "lon": "lon",
            "file": str(tmp_path / "quarters.geojson"),
            "property": "quarter",
        }
    ]
    (link,) = links(load(write_contract, data, now))
    assert "per district (every zone of quarter lies inside one of district)" in link.relation


def test_views_with_other_filters_or_no_common_additive_measure_are_not_linked(
    example_factory: ExampleFactory, write_contract: ContractWriter, now: datetime
) -> None:
    data = _second_view(
        example_factory("micromobility"), filter={"field": "event_type", "in": ["reserved"]}
    )
    assert links(load(write_contract, data, now)) == []
    data = _second_view(example_factory("micromobility"))
    data["views"][1]["measures"] = [{"type": "mean", "name": "m", "field": "lat"}]
    assert links(load(write_contract, data, now)) == []


def test_a_noised_partner_is_linked_but_not_suppressed_for(
    example_factory: ExampleFactory, write_contract: ContractWriter, now: datetime
) -> None:
    noise = {"epsilon": 1.0, "budget": 192.0, "period": "P1D"}
    data = _second_view(example_factory("micromobility"), noise=noise)
    data["views"][1]["measures"] = [{"type": "count", "name": "events"}]
    contract = load(write_contract, data, now)
    (link,) = links(contract)
    assert not link.protected and link.warning is None
    assert "noised" in link.relation
    assert linked_sets(contract) == []


def test_validate_warns_when_linked_views_cannot_be_protected(
    example_factory: ExampleFactory, write_contract: ContractWriter, now: datetime
) -> None:
    data = example_factory("rentals")
    data["views"][1]["window"] = "P15D"
    path = write_contract(data)
    contract = load_contracts([path], now=now)[0]
    (link,) = links(contract)
    assert not link.protected and linked_sets(contract) == []
    ((where, message),) = link_warnings(contract)
    assert where == "views[1]"
    assert "windows of different lengths" in message
    assert "add noise to one of them, or drop one" in message
    code, text = validate([path], now=now)
    assert code == 0
    assert text.splitlines()[0] == f"warning: {path}:views[1]: {message}"
    assert text.splitlines()[-1].startswith("OK: 1 contracts valid")


def test_validate_warns_about_the_cost_of_different_k(
    example_factory: ExampleFactory, write_contract: ContractWriter, now: datetime
) -> None:
    data = example_factory("rentals")
    data["views"][1]["k"] = 10
    contract = load(write_contract, data, now)
    (link,) = links(contract)
    assert link.protected
    ((_, message),) = link_warnings(contract)
    assert "different k" in message
    assert validate([examples_dir()], now=now) == (
        0,
        "OK: 3 contracts valid (lyon-micromobility, bordeaux-navigation, paris-str)",
    )
