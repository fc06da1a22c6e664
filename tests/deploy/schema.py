"""A tiny structural checker for deployment files: a JSON-Schema subset, no dependency.

Supported keywords: ``type`` (object, array, string, integer, boolean), ``required``,
``properties``, ``additionalProperties`` (a schema for every other value), ``items``,
``minItems``, ``minimum``, ``const``, ``enum``, ``pattern`` (full match).
"""

from __future__ import annotations

import re
from typing import Any

Schema = dict[str, Any]

_TYPES: dict[str, tuple[type, ...]] = {
    "object": (dict,),
    "array": (list,),
    "string": (str,),
    "integer": (int,),
    "boolean": (bool,),
}


def violations(value: Any, schema: Schema, path: str = "$") -> list[str]:
    """Every place where ``value`` breaks ``schema``, as ``path: what is wrong``."""
    expected = schema.get("type")
    if expected is not None and not _is_type(value, expected):
        return [f"{path}: expected {expected}, got {type(value).__name__}"]
    problems: list[str] = []
    if "const" in schema and value != schema["const"]:
        problems.append(f"{path}: must be {schema['const']!r}, is {value!r}")
    if "enum" in schema and value not in schema["enum"]:
        problems.append(f"{path}: must be one of {schema['enum']!r}, is {value!r}")
    pattern = schema.get("pattern")
    if pattern is not None and isinstance(value, str) and not re.fullmatch(pattern, value):
        problems.append(f"{path}: {value!r} does not match {schema['pattern']}")
    if "minimum" in schema and isinstance(value, int) and value < schema["minimum"]:
        problems.append(f"{path}: {value} < {schema['minimum']}")
    if isinstance(value, dict):
        problems += _object_violations(value, schema, path)
    if isinstance(value, list):
        problems += _array_violations(value, schema, path)
    return problems


def _is_type(value: Any, expected: str) -> bool:
    if expected == "integer" and isinstance(value, bool):
        return False
    return isinstance(value, _TYPES[expected])


def _object_violations(value: dict[str, Any], schema: Schema, path: str) -> list[str]:
    problems = [
        f"{path}: missing {key!r}" for key in schema.get("required", ()) if key not in value
    ]
    properties: dict[str, Schema] = schema.get("properties", {})
    other: Schema | None = schema.get("additionalProperties")
    for key, item in value.items():
        sub = properties.get(key, other)
        if sub is not None:
            problems += violations(item, sub, f"{path}.{key}")
    return problems


def _array_violations(value: list[Any], schema: Schema, path: str) -> list[str]:
    problems: list[str] = []
    if len(value) < schema.get("minItems", 0):
        problems.append(f"{path}: fewer than {schema['minItems']} items")
    if "items" in schema:
        for index, item in enumerate(value):
            problems += violations(item, schema["items"], f"{path}[{index}]")
    return problems
