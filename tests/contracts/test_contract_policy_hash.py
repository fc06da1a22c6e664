"""The policy hash depends on what a contract says, not on how the file is written."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
import yaml

from contracts import examples_dir, load_contracts, policy_hash, short_policy_hash
from contracts.copies import localise_references

pytestmark = pytest.mark.unit

ExampleFactory = Callable[[str], dict[str, Any]]
ContractWriter = Callable[..., Path]


def _reversed_keys(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _reversed_keys(value[k]) for k in reversed(list(value))}
    if isinstance(value, list):
        return [_reversed_keys(v) for v in value]
    return value


def _hash_of(path: Path, now: datetime) -> str:
    return policy_hash(load_contracts([path], now=now)[0])


def test_hash_is_hex_sha256_with_a_short_form(now: datetime) -> None:
    [contract] = load_contracts([examples_dir() / "micromobility.yaml"], now=now)
    digest = policy_hash(contract)
    assert len(digest) == 64 and int(digest, 16) >= 0
    assert short_policy_hash(contract) == digest[:16]


def test_hash_ignores_key_order_formatting_comments_and_file_location(
    example_factory: ExampleFactory, write_contract: ContractWriter, tmp_path: Path, now: datetime
) -> None:
    original = _hash_of(examples_dir() / "micromobility.yaml", now)
    data = localise_references(example_factory("micromobility"), tmp_path)
    block = write_contract(_reversed_keys(data), "block.yaml")
    flow = yaml.safe_dump(data, default_flow_style=True, width=60, allow_unicode=True)
    flow_file = write_contract("# a comment\n" + flow, "flow.yaml")
    assert _hash_of(block, now) == _hash_of(flow_file, now) == original


def test_hash_ignores_duration_spelling(
    example_factory: ExampleFactory, write_contract: ContractWriter, now: datetime
) -> None:
    data = example_factory("micromobility")
    before = _hash_of(write_contract(data, "a.yaml"), now)
    data["pseudonymisation"]["rotation"] = "PT24H"
    data["views"][1]["window"] = "PT120M"
    assert _hash_of(write_contract(data, "b.yaml"), now) == before


@pytest.mark.parametrize(
    ("path", "value"),
    [
        (("views", 0, "k"), 11),
        (("version", None, None), 2),
        (("views", 0, "window"), "PT30M"),
        (("title", None, None), "Another title"),
    ],
)
def test_hash_changes_with_meaning(
    example_factory: ExampleFactory,
    write_contract: ContractWriter,
    now: datetime,
    path: tuple[Any, Any, Any],
    value: Any,
) -> None:
    data = example_factory("micromobility")
    before = _hash_of(write_contract(data, "a.yaml"), now)
    key, index, leaf = path
    if index is None:
        data[key] = value
    else:
        data[key][index][leaf] = value
    assert _hash_of(write_contract(data, "b.yaml"), now) != before


def test_hash_covers_schema_and_zone_contents(
    example_factory: ExampleFactory, write_contract: ContractWriter, tmp_path: Path, now: datetime
) -> None:
    data = example_factory("rentals")
    zones_file = Path(data["views"][0]["group_by"][0]["file"])
    before = _hash_of(write_contract(data, "a.yaml"), now)
    moved = tmp_path / "zones.geojson"
    moved.write_text(zones_file.read_text(encoding="utf-8"), encoding="utf-8")
    data["views"][0]["group_by"][0]["file"] = str(moved)
    assert _hash_of(write_contract(data, "b.yaml"), now) == before
    moved.write_text(zones_file.read_text(encoding="utf-8").replace("48.86", "48.87"))
    assert _hash_of(write_contract(data, "c.yaml"), now) != before
