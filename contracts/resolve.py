"""Attach what a contract refers to in other files: Avro schemas, territory and zone polygons.

Paths are relative to the contract file's folder; a missing file is reported with the path
tried. Every failure becomes an ``Issue`` with a fixed
message (file missing, not JSON, not a valid Avro schema, ...): library exception texts are
never passed on, because they can quote the file's content.

A reference must stay inside the contract's folder (or the shared ``schemas/`` folder beside
it, the layout of ``contracts/examples`` + ``contracts/schemas`` and of the deployments): an
absolute path, a ``..`` or a symbolic link that leads anywhere else is refused before the file
is opened, unless the caller passes ``allow_outside=True`` (``--allow-outside-refs``). The
check is on the resolved path, so every symlink on the way is followed first.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import fastavro

from contracts.errors import Issue
from contracts.geometry import GeometryError, MultiPolygon, Zone, geometry_polygons
from contracts.limits import MAX_FILE_BYTES, TOO_DEEP, size_problem
from contracts.model import Contract, Stream, Territory, ZonesDimension

SHARED_SCHEMAS_DIR = "schemas"  # beside the contract's folder: ../schemas/x.avsc is allowed
RELATIVE_RULE = "a relative path is read from the contract file's folder"
OUTSIDE_RULE = (
    "a referenced file must be inside the contract's folder or the schemas/ folder beside it "
    "(--allow-outside-refs lifts this)"
)


class _FileProblem(Exception):
    """A referenced file cannot be used; the message is one of ours."""


class _FileMissing(_FileProblem):
    """The referenced file does not exist (``_Files.read_json`` adds the path it tried)."""


class _Files:
    """Where a contract's references may be read from: its folder, unless told otherwise."""

    def __init__(self, base_dir: Path, allow_outside: bool) -> None:
        self.base_dir = base_dir
        self.allow_outside = allow_outside
        root = base_dir.resolve()
        self.roots = (root, (root.parent / SHARED_SCHEMAS_DIR).resolve())

    def locate(self, ref: str) -> Path:
        """The file ``ref`` names; ``_FileProblem`` if it lies outside the allowed folders."""
        path = self.base_dir / ref
        if self.allow_outside:
            return path
        resolved = path.resolve()
        if any(resolved.is_relative_to(root) for root in self.roots):
            return resolved
        msg = f"{self._why_outside(ref)}; {OUTSIDE_RULE}"
        raise _FileProblem(msg)

    def _why_outside(self, ref: str) -> str:
        if Path(ref).is_absolute():
            return "refused: an absolute path outside the contract's folder"
        lexical = Path(os.path.normpath(self.base_dir.absolute() / ref))
        if not any(lexical.is_relative_to(r) for r in self._lexical_roots()):
            return "refused: the path leaves the contract's folder with '..'"
        return "refused: a symbolic link leads outside the contract's folder"

    def _lexical_roots(self) -> tuple[Path, ...]:
        root = Path(os.path.normpath(self.base_dir.absolute()))
        return (root, root.parent / SHARED_SCHEMAS_DIR)

    def read_json(self, ref: str) -> dict[str, Any]:
        path = self.locate(ref)
        try:
            return _read_json(path)
        except _FileMissing as exc:
            tried = Path(os.path.normpath(path.absolute()))
            rule = "" if Path(ref).is_absolute() else f" ({RELATIVE_RULE})"
            msg = f"file not found: tried {tried}{rule}"
            raise _FileProblem(msg) from exc


def resolve_references(
    contract: Contract, base_dir: Path, *, allow_outside: bool = False
) -> list[Issue]:
    """Load and attach every external reference; return what went wrong.

    Files outside ``base_dir`` (and its sibling ``schemas/``) are refused unless
    ``allow_outside``.
    """
    files = _Files(base_dir, allow_outside)
    issues = list(_resolve_territory(contract.territory, files))
    for i, stream in enumerate(contract.streams):
        issues.extend(_resolve_schema(f"streams[{i}].schema", stream, files))
    for i, view in enumerate(contract.views):
        for j, dim in enumerate(view.group_by):
            if isinstance(dim, ZonesDimension):
                issues.extend(_resolve_zones(f"views[{i}].group_by[{j}]", dim, files))
    return issues


def _resolve_territory(territory: Territory, files: _Files) -> Iterator[Issue]:
    if territory.polygon is None:
        return
    try:
        document = _reference(territory.polygon, files)
        polygons: MultiPolygon = geometry_polygons(document)
    except (_FileProblem, GeometryError) as exc:
        yield Issue("territory.polygon", str(exc))
        return
    territory._bind(polygons)


def _resolve_schema(path: str, stream: Stream, files: _Files) -> Iterator[Issue]:
    try:
        raw_schema = _reference(stream.schema_ref, files)
        _check_flat_record(raw_schema)
        parsed = _parse_avro(raw_schema)
    except _FileProblem as exc:
        yield Issue(path, str(exc))
        return
    stream._bind(raw_schema, parsed)


def _parse_avro(raw_schema: dict[str, Any]) -> dict[str, Any]:
    try:
        parsed = fastavro.parse_schema(raw_schema)
    # fastavro signals a bad schema with many exception types; all mean the same to a user.
    except Exception as exc:
        msg = "not a valid Avro schema"
        raise _FileProblem(msg) from exc
    if not isinstance(parsed, dict):
        msg = "not a valid Avro schema"
        raise _FileProblem(msg)
    return parsed


def _check_flat_record(raw_schema: Mapping[str, Any]) -> None:
    """Streams are flat records: nested records would need field paths everywhere."""
    fields = raw_schema.get("fields")
    if raw_schema.get("type") != "record" or not isinstance(fields, list) or not fields:
        msg = "the Avro schema must be a record with at least one field"
        raise _FileProblem(msg)
    for field in fields:
        if not isinstance(field, Mapping) or not isinstance(field.get("name"), str):
            msg = "not a valid Avro schema"
            raise _FileProblem(msg)
        if _has_nested_record(field.get("type")):
            msg = "nested records are not supported: flatten the schema"
            raise _FileProblem(msg)


def _has_nested_record(avro_type: Any) -> bool:
    if isinstance(avro_type, list):
        return any(_has_nested_record(branch) for branch in avro_type)
    return isinstance(avro_type, Mapping) and avro_type.get("type") == "record"


def _resolve_zones(path: str, dim: ZonesDimension, files: _Files) -> Iterator[Issue]:
    try:
        document = files.read_json(dim.file)
    except _FileProblem as exc:
        yield Issue(f"{path}.file", str(exc))
        return
    features = document.get("features")
    if (
        document.get("type") != "FeatureCollection"
        or not isinstance(features, list)
        or not features
    ):
        yield Issue(f"{path}.file", "must be a GeoJSON FeatureCollection with features")
        return
    try:
        dim._bind(_zones(features, dim.property_name))
    except _MissingProperty:
        yield Issue(f"{path}.property", _missing_property(features))
    except (GeometryError, _FileProblem) as exc:
        yield Issue(f"{path}.file", f"invalid zone geometry: {exc}")


def _missing_property(features: list[Any]) -> str:
    """What to write instead: the properties every feature has (names, not values)."""
    shared: set[str] | None = None
    for feature in features:
        properties = feature.get("properties") if isinstance(feature, Mapping) else None
        names = {
            str(name)
            for name, value in (properties.items() if isinstance(properties, Mapping) else ())
            if value is not None and not isinstance(value, Mapping | list)
        }
        shared = names if shared is None else shared & names
    found = ", ".join(sorted(shared or ()))
    have = f"properties every feature has: {found}" if found else "the features share no property"
    return f"a feature of the zones file lacks this property; {have}"


class _MissingProperty(Exception):
    """A zone feature has no value for the dimension's property."""


def _zones(features: list[Any], property_name: str) -> tuple[Zone, ...]:
    """Zones by property value; features sharing a value are merged into one zone."""
    merged: dict[str, MultiPolygon] = {}
    for feature in features:
        if not isinstance(feature, Mapping):
            msg = "a feature is not a JSON object"
            raise _FileProblem(msg)
        properties = feature.get("properties")
        value = properties.get(property_name) if isinstance(properties, Mapping) else None
        if value is None or isinstance(value, Mapping | list):
            raise _MissingProperty
        merged[str(value)] = merged.get(str(value), ()) + geometry_polygons(feature)
    return tuple(Zone(value, polygons) for value, polygons in merged.items())


def _reference(ref: str | dict[str, Any], files: _Files) -> dict[str, Any]:
    """An inline JSON object, or the JSON object in a file relative to the contract."""
    return ref if isinstance(ref, dict) else files.read_json(ref)


def _read_json(path: Path) -> dict[str, Any]:
    try:
        if path.stat().st_size > MAX_FILE_BYTES:
            msg = f"larger than {MAX_FILE_BYTES // 2**20} MiB"
            raise _FileProblem(msg)
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError as exc:
        msg = "file not found"
        raise _FileMissing(msg) from exc
    except (OSError, UnicodeDecodeError) as exc:
        msg = "cannot read the file"
        raise _FileProblem(msg) from exc
    try:
        document = json.loads(text)
    except json.JSONDecodeError as exc:
        msg = f"not valid JSON (line {exc.lineno})"
        raise _FileProblem(msg) from exc
    except RecursionError as exc:  # the decoder builds nested arrays recursively
        raise _FileProblem(TOO_DEEP) from exc
    too_big = size_problem(document, max_values=None)
    if too_big:
        raise _FileProblem(too_big)
    if not isinstance(document, dict):
        msg = "must contain a JSON object"
        raise _FileProblem(msg)
    return document
