"""Attach what a contract refers to in other files: Avro schemas, territory and zone polygons.

Paths are relative to the contract file. Every failure becomes an ``Issue`` with a fixed
message (file missing, not JSON, not a valid Avro schema, ...): library exception texts are
never passed on, because they can quote the file's content.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import fastavro

from contracts.checks import Issue
from contracts.geometry import GeometryError, MultiPolygon, Zone, geometry_polygons
from contracts.model import Contract, Stream, Territory, ZonesDimension


class _FileProblem(Exception):
    """A referenced file cannot be used; the message is one of ours."""


def resolve_references(contract: Contract, base_dir: Path) -> list[Issue]:
    """Load and attach every external reference; return what went wrong."""
    issues = list(_resolve_territory(contract.territory, base_dir))
    for i, stream in enumerate(contract.streams):
        issues.extend(_resolve_schema(f"streams[{i}].schema", stream, base_dir))
    for i, view in enumerate(contract.views):
        for j, dim in enumerate(view.group_by):
            if isinstance(dim, ZonesDimension):
                issues.extend(_resolve_zones(f"views[{i}].group_by[{j}]", dim, base_dir))
    return issues


def _resolve_territory(territory: Territory, base_dir: Path) -> Iterator[Issue]:
    if territory.polygon is None:
        return
    try:
        document = _reference(territory.polygon, base_dir)
        polygons: MultiPolygon = geometry_polygons(document)
    except (_FileProblem, GeometryError) as exc:
        yield Issue("territory.polygon", str(exc))
        return
    territory._bind(polygons)


def _resolve_schema(path: str, stream: Stream, base_dir: Path) -> Iterator[Issue]:
    try:
        raw_schema = _reference(stream.schema_ref, base_dir)
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


def _resolve_zones(path: str, dim: ZonesDimension, base_dir: Path) -> Iterator[Issue]:
    try:
        document = _read_json(base_dir / dim.file)
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
        yield Issue(f"{path}.property", "a feature of the zones file lacks this property")
    except (GeometryError, _FileProblem) as exc:
        yield Issue(f"{path}.file", f"invalid zone geometry: {exc}")


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


def _reference(ref: str | dict[str, Any], base_dir: Path) -> dict[str, Any]:
    """An inline JSON object, or the JSON object in a file relative to ``base_dir``."""
    return ref if isinstance(ref, dict) else _read_json(base_dir / ref)


def _read_json(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError as exc:
        msg = "file not found"
        raise _FileProblem(msg) from exc
    except (OSError, UnicodeDecodeError) as exc:
        msg = "cannot read the file"
        raise _FileProblem(msg) from exc
    try:
        document = json.loads(text)
    except json.JSONDecodeError as exc:
        msg = f"not valid JSON (line {exc.lineno})"
        raise _FileProblem(msg) from exc
    if not isinstance(document, dict):
        msg = "must contain a JSON object"
        raise _FileProblem(msg)
    return document
