"""A contract as one self-contained document (what ``apply`` publishes for analysts), and
back: the same contract, the same policy hash, nothing from the operator's disk."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest
import yaml

from contracts import examples_dir, load_contracts, parse_contract
from contracts.bundle import (
    ContractDocumentError,
    contract_document,
    contract_from_document,
    document_bytes,
)
from contracts.model import ZonesDimension
from contracts.policy_hash import policy_hash

pytestmark = pytest.mark.unit
NOW = datetime(2026, 6, 1, tzinfo=UTC)


@pytest.mark.parametrize("name", ["micromobility", "navigation", "rentals"])
def test_every_example_round_trips_to_the_same_contract(name: str) -> None:
    contract = load_contracts([examples_dir() / f"{name}.yaml"], now=NOW)[0]
    document = contract_document(contract, now=NOW)
    wire = document_bytes(document)
    assert str(examples_dir()) not in wire.decode()  # no path of the operator's machine
    back = contract_from_document(wire, now=NOW, origin="test")
    assert policy_hash(back) == policy_hash(contract) == document["policy_hash"]
    assert (back.id, back.version) == (contract.id, contract.version)
    assert [(v.name, v.measures, v.k, v.noise) for v in back.views] == [
        (v.name, v.measures, v.k, v.noise) for v in contract.views
    ]
    assert back.territory.polygons == contract.territory.polygons
    assert [s.raw_schema for s in back.streams] == [s.raw_schema for s in contract.streams]
    assert document_bytes(contract_document(contract, now=NOW)) == wire  # stable bytes


def test_zone_files_keep_their_name_for_the_column_docs() -> None:
    rentals = load_contracts([examples_dir() / "rentals.yaml"], now=NOW)[0]
    back = contract_from_document(contract_document(rentals, now=NOW), now=NOW)
    before, after = (
        next(d for v in c.views for d in v.group_by if isinstance(d, ZonesDimension))
        for c in (rentals, back)
    )
    assert Path(after.file).name == Path(before.file).name == "paris-districts.geojson"
    assert after.zones == before.zones


def test_a_document_whose_files_were_altered_is_refused() -> None:
    rentals = load_contracts([examples_dir() / "rentals.yaml"], now=NOW)[0]
    document = contract_document(rentals, now=NOW)
    zones = next(v for k, v in document["files"].items() if k.endswith(".geojson"))
    ring = zones["features"][0]["geometry"]["coordinates"][0]
    ring[1] = [ring[1][0] + 0.01, ring[1][1]]  # one corner of one district moved
    with pytest.raises(ContractDocumentError, match="does not hash to the policy hash"):
        contract_from_document(document, now=NOW, origin="respublica._contracts:paris-str")


@pytest.mark.parametrize(
    "damage",
    [
        lambda d: d.update(format="something-else/1"),
        lambda d: d["files"].update({"../../etc/x.json": {}}),
        lambda d: d["files"].update({"files/0/../../x.json": {}}),
        lambda d: d.update(contract=["not", "a", "mapping"]),
        lambda d: d.pop("policy_hash"),
    ],
)
def test_malformed_documents_are_refused_before_any_file_is_written(damage) -> None:  # type: ignore[no-untyped-def]
    contract = load_contracts([examples_dir() / "navigation.yaml"], now=NOW)[0]
    document = contract_document(contract, now=NOW)
    damage(document)
    with pytest.raises(ContractDocumentError):
        contract_from_document(document, now=NOW)
    with pytest.raises(ContractDocumentError, match="not a contract document"):
        contract_from_document(b"\x00not json", now=NOW)


def test_a_document_nested_without_end_is_refused_not_a_crash() -> None:
    # Before: json.loads raised RecursionError out of the reader (only ValueError was caught).
    with pytest.raises(ContractDocumentError, match="not a contract document"):
        contract_from_document(b"[" * 100_000, now=NOW, origin="respublica._contracts:x")


def test_a_contract_edited_since_it_was_loaded_is_not_published(tmp_path: Path) -> None:
    source = tmp_path / "c.yaml"
    data = yaml.safe_load((examples_dir() / "navigation.yaml").read_text(encoding="utf-8"))
    for stream in data["streams"]:
        stream["schema"] = str((examples_dir() / stream["schema"]).resolve())
    ring = [[-0.7, 44.8], [-0.5, 44.8], [-0.5, 44.9], [-0.7, 44.8]]
    data["territory"]["polygon"] = {"type": "Polygon", "coordinates": [ring]}
    source.write_text(yaml.safe_dump(data), encoding="utf-8")
    contract = load_contracts([source], now=NOW, allow_outside=True)[0]
    assert contract_document(contract, now=NOW)["files"]  # absolute schema paths are inlined
    data["views"][0]["k"] = 4
    source.write_text(yaml.safe_dump(data), encoding="utf-8")
    with pytest.raises(ContractDocumentError, match="changed since it was loaded"):
        contract_document(contract, now=NOW)


def test_a_contract_without_a_file_cannot_be_published() -> None:
    data = yaml.safe_load((examples_dir() / "micromobility.yaml").read_text(encoding="utf-8"))
    contract = parse_contract(data, base_dir=examples_dir(), now=NOW)
    with pytest.raises(ContractDocumentError, match="not loaded from a file"):
        contract_document(contract, now=NOW)
