"""Copies of the bundled example contracts that can live in any folder.

The examples refer to their Avro schemas, zone files and territory polygon by paths relative
to the contract file; a copy written elsewhere (a demo run, a benchmark, a test under its own
id) needs those references made absolute first.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml


def absolute_references(data: dict[str, Any], base: Path) -> dict[str, Any]:
    """Make the schema, zone and polygon file references of ``data`` absolute (in place)."""
    for stream in data.get("streams", []):
        if isinstance(stream.get("schema"), str):
            stream["schema"] = str((base / stream["schema"]).resolve())
    for view in data.get("views", []):
        for dim in view.get("group_by", []):
            if "file" in dim:
                dim["file"] = str((base / dim["file"]).resolve())
    territory = data.get("territory", {})
    if isinstance(territory.get("polygon"), str):
        territory["polygon"] = str((base / territory["polygon"]).resolve())
    return data


def example_data(name: str) -> dict[str, Any]:
    """A bundled example (``micromobility`` or ``micromobility.yaml``) as a relocatable dict."""
    from contracts import examples_dir

    file = name if name.endswith((".yaml", ".yml")) else f"{name}.yaml"
    source = examples_dir() / file
    data = yaml.safe_load(source.read_text(encoding="utf-8"))
    return absolute_references(data, source.parent)


def write_contract(data: dict[str, Any], folder: Path, name: str | None = None) -> Path:
    """Write ``data`` as ``<folder>/<id>.yaml`` (or ``name``) and return the path."""
    path = folder / (name or f"{data['id']}.yaml")
    path.write_text(yaml.safe_dump(data, sort_keys=False, allow_unicode=True), encoding="utf-8")
    return path
