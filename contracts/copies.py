"""Copies of the bundled example contracts that can live in any folder.

The examples refer to their Avro schemas, zone files and territory polygon by paths relative
to the contract file; ``example_data`` makes them absolute so the dict can be edited anywhere.
A contract may only read files inside its own folder (``contracts.resolve``), so
``write_contract`` copies every referenced file that lies outside the target folder into
``<folder>/refs/`` and points the copy there: a demo run, a benchmark or a test gets a
self-contained folder that loads without ``allow_outside``.
"""

from __future__ import annotations

import hashlib
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml

REFS_DIR = "refs"


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
    """Write ``data`` as ``<folder>/<id>.yaml`` (or ``name``) and return the path.

    Referenced files outside ``folder`` are copied into it first (``localise_references``).
    """
    localise_references(data, folder)
    path = folder / (name or f"{data['id']}.yaml")
    path.write_text(yaml.safe_dump(data, sort_keys=False, allow_unicode=True), encoding="utf-8")
    return path


def localise_references(data: dict[str, Any], folder: Path) -> dict[str, Any]:
    """Copy each referenced file that is outside ``folder`` into ``<folder>/refs/`` and make
    the reference relative to ``folder`` (in place). A missing file is left as it is, for the
    loader to report. Same name, other content: the copy's name gets a content hash."""
    root = folder.resolve()
    for holder, key in _file_references(data):
        source = Path(holder[key])
        if not source.is_absolute():
            continue
        resolved = source.resolve()
        if resolved.is_relative_to(root) or not resolved.is_file():
            continue
        holder[key] = f"{REFS_DIR}/{_copy_into(resolved, root / REFS_DIR).name}"
    return data


def _file_references(data: dict[str, Any]) -> Iterator[tuple[dict[str, Any], str]]:
    """(dict, key) of every file reference given as a path string."""
    for stream in data.get("streams", []):
        if isinstance(stream, dict) and isinstance(stream.get("schema"), str):
            yield stream, "schema"
    for view in data.get("views", []):
        for dim in view.get("group_by", []) if isinstance(view, dict) else []:
            if isinstance(dim, dict) and isinstance(dim.get("file"), str):
                yield dim, "file"
    territory = data.get("territory")
    if isinstance(territory, dict) and isinstance(territory.get("polygon"), str):
        yield territory, "polygon"


def _copy_into(source: Path, target_dir: Path) -> Path:
    content = source.read_bytes()
    target_dir.mkdir(parents=True, exist_ok=True)
    target = target_dir / source.name
    if target.exists() and target.read_bytes() != content:
        digest = hashlib.sha256(content).hexdigest()[:12]
        target = target_dir / f"{source.stem}-{digest}{source.suffix}"
    if not target.exists():
        shutil.copyfile(source, target)
    return target
