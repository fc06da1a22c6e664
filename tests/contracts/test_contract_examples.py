"""The bundled examples load, and the model's accessors give what the runtime needs."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from contracts import ContractError, examples_dir, load_contracts, parse_contract
from contracts.cli import validate
from contracts.copies import localise_references
from contracts.model import H3Dimension, ZonesDimension

pytestmark = pytest.mark.unit

ExampleFactory = Callable[[str], dict[str, Any]]


def test_all_examples_validate(now: datetime) -> None:
    contracts = load_contracts([examples_dir()], now=now)
    assert [c.id for c in contracts] == ["lyon-micromobility", "bordeaux-navigation", "paris-str"]


def test_examples_stay_valid_until_2030() -> None:
    later = datetime(2030, 6, 1, tzinfo=UTC)
    assert len(load_contracts([examples_dir()], now=later)) == 3


def test_validate_reports_ok(now: datetime) -> None:
    code, text = validate([examples_dir()], now=now)
    assert code == 0
    assert text == "OK: 3 contracts valid (lyon-micromobility, bordeaux-navigation, paris-str)"


def test_validate_reports_failure(now: datetime, tmp_path: Path) -> None:
    code, text = validate([tmp_path / "missing.yaml"], now=now)
    assert code == 1
    assert text == f"{tmp_path / 'missing.yaml'}: file not found\nFAILED: 1 problem(s) in 1 file(s)"


def test_topics_and_lookups(now: datetime) -> None:
    [contract] = load_contracts([examples_dir() / "micromobility.yaml"], now=now)
    trips = contract.stream("trips")
    assert contract.topic_ingest(trips) == "ingest.lyon-micromobility.trips"
    assert contract.topic_raw("trips") == "raw.lyon-micromobility.trips"
    assert contract.topic_dlq("trips") == "dlq.lyon-micromobility.trips"
    assert contract.topic_public(contract.view("availability")) == (
        "public.lyon-micromobility.availability"
    )
    assert [v.name for v in contract.views_of("trips")] == ["origin_destination"]
    with pytest.raises(KeyError):
        contract.view("nope")
    with pytest.raises(KeyError):
        contract.stream("nope")


def test_stream_schema_and_durations(now: datetime) -> None:
    [contract] = load_contracts([examples_dir() / "micromobility.yaml"], now=now)
    stream = contract.stream("vehicle_events")
    assert stream.raw_schema["name"] == "VehicleEvent"
    assert stream.avro_schema["name"] == "respublica.mds.VehicleEvent"
    assert stream.fields["battery_pct"].nullable
    assert stream.fields["timestamp"].types == {"long"}
    assert stream.allowed_lateness == timedelta(minutes=5)
    assert contract.pseudonymisation.rotation == timedelta(days=1)
    view = contract.view("availability")
    assert view.window == view.time_bucket == timedelta(minutes=15)
    assert view.filter is not None and view.filter.matches({"event_type": "available"})
    assert not view.filter.matches({"event_type": "reserved"})
    assert isinstance(view.group_by[0], H3Dimension) and view.group_by[0].resolution == 7


def test_is_active(now: datetime) -> None:
    [contract] = load_contracts([examples_dir() / "micromobility.yaml"], now=now)
    assert contract.is_active(now)
    assert not contract.is_active(datetime(2025, 12, 31, 23, 59, tzinfo=UTC))
    assert not contract.is_active(contract.validity.end)
    with pytest.raises(ValueError, match="timezone-aware"):
        contract.is_active(datetime(2027, 1, 1))  # noqa: DTZ001  # naive on purpose


def test_zones_and_territory_are_resolved(now: datetime) -> None:
    rentals, navigation = (
        load_contracts([examples_dir() / name], now=now)[0]
        for name in ("rentals.yaml", "navigation.yaml")
    )
    view = rentals.view("nights_by_district")
    zones = view.zones["district"]
    assert len(zones) == 8
    assert isinstance(view.group_by[0], ZonesDimension)
    assert [z.value for z in zones if z.contains(2.30, 48.87)] == ["north-centre-west"]
    assert rentals.territory.polygons[0][0][0] == (2.22, 48.81)
    ring = navigation.territory.polygons[0][0]
    assert ring[0] == ring[-1] and len(ring) == 7


def test_parse_contract_accepts_inline_schema(
    example_factory: ExampleFactory, now: datetime, tmp_path: Path
) -> None:
    data = example_factory("navigation")
    path = Path(data["streams"][0]["schema"])
    data["streams"][0]["schema"] = json.loads(path.read_text(encoding="utf-8"))
    localise_references(data, tmp_path)  # the other stream's schema file, next to the contract
    contract = parse_contract(data, base_dir=tmp_path, now=now)
    assert contract.stream("jams").raw_schema["name"] == "Jam"
    data["views"][0]["k"] = 0
    with pytest.raises(ContractError, match=r"<contract>:views\[0\]\.k: must be at least 2"):
        parse_contract(data, base_dir=tmp_path, now=now)


def test_models_are_frozen(now: datetime) -> None:
    [contract] = load_contracts([examples_dir() / "micromobility.yaml"], now=now)
    with pytest.raises(ValueError, match="frozen"):
        contract.view("availability").k = 1
