"""Fixtures for contract tests: example contracts as mutable dicts, written to tmp_path."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml

from contracts import examples_dir
from contracts.copies import localise_references

NOW = datetime(2026, 6, 1, tzinfo=UTC)
EXAMPLE_FILES = {
    "micromobility": "micromobility.yaml",
    "rentals": "rentals.yaml",
    "navigation": "navigation.yaml",
}

ExampleFactory = Callable[[str], dict[str, Any]]
ContractWriter = Callable[..., Path]


@pytest.fixture
def now() -> datetime:
    """The validation clock of every contract test (contracts expire no earlier than 2030)."""
    return NOW


def _absolutise(data: dict[str, Any]) -> dict[str, Any]:
    """Point schema and zone references at the bundled files so a copy works anywhere."""
    base = examples_dir()
    for stream in data["streams"]:
        stream["schema"] = str((base / stream["schema"]).resolve())
    for view in data.get("views", []):
        for dim in view.get("group_by", []):
            if dim.get("type") == "zones":
                dim["file"] = str((base / dim["file"]).resolve())
    return data


@pytest.fixture
def example_factory() -> ExampleFactory:
    """``example_factory("micromobility")`` -> a fresh dict of that example contract."""

    def load(name: str) -> dict[str, Any]:
        text = (examples_dir() / EXAMPLE_FILES[name]).read_text(encoding="utf-8")
        return _absolutise(yaml.safe_load(text))

    return load


@pytest.fixture
def write_contract(tmp_path: Path) -> ContractWriter:
    """``write_contract(data, "name.yaml")`` -> path of the YAML file written in tmp_path.

    Referenced files outside tmp_path are copied into it first: a contract reads only files in
    its own folder."""

    def write(data: dict[str, Any] | str, name: str = "contract.yaml") -> Path:
        path = tmp_path / name
        if not isinstance(data, str):
            localise_references(data, tmp_path)
        text = data if isinstance(data, str) else yaml.safe_dump(data, allow_unicode=True)
        path.write_text(text, encoding="utf-8")
        return path

    return write
