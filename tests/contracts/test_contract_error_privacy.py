"""Error messages never repeat a value taken from a contract, its schema or its zones.

The one exception is the path of a referenced file that does not exist: the message says the
path it tried, so that the operator sees where a relative path led.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from contracts import ContractError, load_contracts

pytestmark = pytest.mark.unit

SENTINEL = "SENTINEL-7f3a"
NAME_SENTINEL = "sentinel_7f3a"  # where the format demands a lower-case name
ExampleFactory = Callable[[str], dict[str, Any]]
ContractWriter = Callable[..., Path]


def _poison_micromobility(data: dict[str, Any]) -> None:
    data["version"] = SENTINEL
    data["validity"]["end"] = SENTINEL
    data["pseudonymisation"]["rotation"] = SENTINEL
    data["views"][0]["measures"][0] = {"type": SENTINEL, "name": "x"}
    data["views"][1]["group_by"][0]["resolution"] = SENTINEL
    data["consumers"][0]["views"] = [SENTINEL]


def _poison_navigation(data: dict[str, Any]) -> None:
    jams, alerts = data["views"]
    jams["group_by"][0]["lat"] = SENTINEL
    jams["measures"][1]["field"] = SENTINEL
    jams["filter"] = {"field": SENTINEL, "in": [SENTINEL]}
    jams["pseudonymise"] = [SENTINEL]
    alerts["stream"] = NAME_SENTINEL
    data["consumers"][0]["views"] = [NAME_SENTINEL]
    data["streams"][0]["subject"] = SENTINEL
    data["streams"][1]["schema"] = f"{SENTINEL}.avsc"


def _poison_rentals(data: dict[str, Any], tmp_path: Path) -> None:
    zones = data["views"][0]["group_by"][0]
    zones["property"] = SENTINEL
    bad_schema = tmp_path / "bad.avsc"
    bad_schema.write_text(json.dumps({"type": "record", "name": SENTINEL}) + SENTINEL)
    data["streams"][0]["schema"] = str(bad_schema)


def test_no_message_contains_a_data_value(
    example_factory: ExampleFactory, write_contract: ContractWriter, tmp_path: Path, now: datetime
) -> None:
    micromobility = example_factory("micromobility")
    _poison_micromobility(micromobility)
    navigation = example_factory("navigation")
    _poison_navigation(navigation)
    rentals = example_factory("rentals")
    _poison_rentals(rentals, tmp_path)
    files = [
        write_contract(micromobility, "a.yaml"),
        write_contract(navigation, "b.yaml"),
        write_contract(rentals, "c.yaml"),
        write_contract(f"id: {SENTINEL}\n  bad: [", "d.yaml"),
    ]
    with pytest.raises(ContractError) as caught:
        load_contracts(files, now=now)
    # The one value a message repeats on purpose: the path of a missing file, as tried.
    text = re.sub(r"file not found: tried \S+", "file not found", str(caught.value))
    assert len(caught.value.problems) >= 14
    assert "sentinel" not in text.lower()


def test_zone_and_schema_file_contents_are_not_echoed(
    example_factory: ExampleFactory, write_contract: ContractWriter, tmp_path: Path, now: datetime
) -> None:
    zones = tmp_path / "zones.geojson"
    zones.write_text('{"type": "FeatureCollection", "features": [' + SENTINEL)
    data = example_factory("rentals")
    data["views"][0]["group_by"][0]["file"] = str(zones)
    with pytest.raises(ContractError) as caught:
        load_contracts([write_contract(data)], now=now)
    assert [p.message for p in caught.value.problems] == ["not valid JSON (line 1)"]
    assert SENTINEL not in str(caught.value)
