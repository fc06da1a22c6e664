"""What a contract needs to know about a stream's Avro schema: its top-level fields and types.

Schemas are flat records (no nested records), so a field is a name, a set of base types and
whether it may be null. Times are plain ``long`` milliseconds since the epoch (no
``logicalType``), so decoded records carry ints, never ``datetime`` objects.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

NUMERIC_TYPES = frozenset({"int", "long", "float", "double"})
INTEGER_TYPES = frozenset({"int", "long"})
_PRIMITIVES = frozenset({"null", "boolean", "int", "long", "float", "double", "bytes", "string"})


@dataclass(frozen=True)
class AvroField:
    """One top-level field of a record schema."""

    name: str
    types: frozenset[str]  # base types without "null": "string", "long", "enum", ...
    nullable: bool
    doc: str = ""

    @property
    def is_numeric(self) -> bool:
        """Every non-null branch is a number, so sum/mean/quantiles are defined."""
        return bool(self.types) and self.types <= NUMERIC_TYPES

    @property
    def is_integer(self) -> bool:
        """Every non-null branch is an int or long."""
        return bool(self.types) and self.types <= INTEGER_TYPES

    def describe(self) -> str:
        """``long``, ``string or null``: the type in words for ``contracts show``."""
        text = " or ".join(sorted(self.types))
        return f"{text} or null" if self.nullable else text


def record_fields(schema: Mapping[str, Any]) -> dict[str, AvroField]:
    """Top-level fields of a record schema, by name, in schema order."""
    fields: dict[str, AvroField] = {}
    for field in schema.get("fields", []):
        branches = _branches(field.get("type"))
        fields[field["name"]] = AvroField(
            name=field["name"],
            types=frozenset(b for b in branches if b != "null"),
            nullable="null" in branches,
            doc=str(field.get("doc", "")),
        )
    return fields


def _branches(avro_type: Any) -> list[str]:
    """Base type names of a type: a union lists each branch; a dict gives its ``type``."""
    if isinstance(avro_type, list):
        return [name for branch in avro_type for name in _branches(branch)]
    if isinstance(avro_type, Mapping):
        inner = avro_type.get("type")
        if inner in ("enum", "fixed", "array", "map", "record"):
            return [str(inner)]
        return _branches(inner)
    if isinstance(avro_type, str):
        return [avro_type if avro_type in _PRIMITIVES else "named"]
    return ["unknown"]
