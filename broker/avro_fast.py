"""Avro binary encoding of flat records, compiled once per schema into one Python function.

fastavro's ``schemaless_writer`` walks the parsed schema for every record and needs a file
object; for the flat record schemas our contracts use (primitives, enums and ``null``-or-one-
type unions) a function generated from the schema is about twice as fast, which matters on the
validator's per-event path. The generated code writes what the Avro spec prescribes:

- ``int``/``long``: zigzag, then a base-128 varint (little-endian groups of 7 bits);
- ``float``/``double``: IEEE 754, little-endian, 4/8 bytes (consecutive ones packed at once);
- ``string``/``bytes``: the length as a long, then the UTF-8 or raw bytes;
- ``boolean``: one byte; ``enum``: the symbol's index as a long;
- a union ``["null", T]``: the branch index as a long, then the value of that branch.

It only takes the fast path when a value has exactly the type the field expects (an ``int``
for a long, a ``str`` for a string...). Anything else, a missing field, a bool for an int, an
out-of-range number, a lone surrogate, goes to fastavro itself, so the result (bytes or
exception) is always fastavro's. ``tests/connectors/test_avro_fast.py`` checks that byte for
byte on known vectors and with hypothesis.
"""

from __future__ import annotations

import io
import struct
from collections.abc import Callable, Mapping
from typing import Any

import fastavro

BodyWriter = Callable[[Mapping[str, Any]], bytes]
INT_MIN, INT_MAX = -(2**31), 2**31 - 1
LONG_MIN, LONG_MAX = -(2**63), 2**63 - 1
_ONE_BYTE = [bytes((n,)) for n in range(128)]
_FIXED = {"float": "f", "double": "d"}  # struct codes of the fixed-size types
_SCALARS = frozenset({"null", "boolean", "int", "long", "float", "double", "string", "bytes"})


class _Misfit(Exception):  # noqa: N818 - internal signal: "let fastavro decide"
    """A value the fast path does not take; fastavro encodes it or raises its own error."""


def varint(n: int) -> bytes:
    """The base-128 varint of a non-negative int (an already zigzagged long)."""
    if n < 0x80:
        return _ONE_BYTE[n]
    if n < 0x4000:
        return bytes((n & 0x7F | 0x80, n >> 7))
    if 0x800000000 <= n < 0x40000000000:  # epoch milliseconds, zigzagged: 6 bytes
        return bytes((n & 0x7F | 0x80, n >> 7 & 0x7F | 0x80, n >> 14 & 0x7F | 0x80,
                      n >> 21 & 0x7F | 0x80, n >> 28 & 0x7F | 0x80, n >> 35))
    out = bytearray()
    while n > 0x7F:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def compile_writer(parsed_schema: Any, *, prefix: bytes = b"") -> BodyWriter | None:
    """``prefix`` + the Avro body of a record, for a flat record schema; None otherwise.

    The returned function falls back to ``fastavro.schemaless_writer`` for any value the fast
    path does not take, so it accepts and refuses exactly what fastavro does.
    """
    fields = _flat_fields(parsed_schema)
    if fields is None:
        return None
    fast = _generate(fields)
    write_slow = _slow_writer(parsed_schema)

    def write(record: Mapping[str, Any]) -> bytes:
        try:
            return fast(record, prefix)
        except Exception:  # noqa: BLE001 - not for the fast path: fastavro decides
            return prefix + write_slow(record)

    return write


def _slow_writer(parsed_schema: Any) -> BodyWriter:
    def write(record: Mapping[str, Any]) -> bytes:
        buf = io.BytesIO()
        fastavro.schemaless_writer(buf, parsed_schema, record)
        return buf.getvalue()

    return write


# A field for the generator: (name, kind, nullable, null_first, enum symbols).
_Field = tuple[str, str, bool, bool, tuple[str, ...]]


def _flat_fields(schema: Any) -> list[_Field] | None:
    if not isinstance(schema, Mapping) or schema.get("type") != "record":
        return None
    fields: list[_Field] = []
    for spec in schema.get("fields", ()):
        parsed = _field(spec.get("type"))
        if parsed is None or not isinstance(spec.get("name"), str):
            return None
        kind, nullable, null_first, symbols = parsed
        fields.append((spec["name"], kind, nullable, null_first, symbols))
    return fields


def _field(avro_type: Any) -> tuple[str, bool, bool, tuple[str, ...]] | None:
    """(kind, nullable, null is branch 0, enum symbols) of a supported type, else None."""
    if isinstance(avro_type, list):
        if len(avro_type) != 2 or "null" not in avro_type:
            return None
        other = avro_type[1] if avro_type[0] == "null" else avro_type[0]
        inner = _field(other)
        if inner is None or inner[0] == "null" or inner[1]:
            return None
        return inner[0], True, avro_type[0] == "null", inner[3]
    if isinstance(avro_type, str):
        return (avro_type, False, False, ()) if avro_type in _SCALARS else None
    if isinstance(avro_type, Mapping):
        if "logicalType" in avro_type:  # fastavro converts datetimes, decimals...: not ours
            return None
        if avro_type.get("type") == "enum":
            symbols = avro_type.get("symbols")
            if isinstance(symbols, list) and all(isinstance(s, str) for s in symbols):
                return "enum", False, False, tuple(symbols)
            return None
        return _field(avro_type.get("type"))
    return None


def _generate(fields: list[_Field]) -> Callable[[Mapping[str, Any], bytes], bytes]:
    """Source of one function writing every field, compiled with ``exec``.

    Field names reach the source only as ``repr`` literals; everything else is ours.
    """
    lines = ["def write(record, prefix):", "    parts = [prefix]", "    add = parts.append"]
    namespace: dict[str, Any] = {"varint": varint, "ONE": _ONE_BYTE, "Misfit": _Misfit,
                                 "LONG_MIN": LONG_MIN, "LONG_MAX": LONG_MAX,
                                 "INT_MIN": INT_MIN, "INT_MAX": INT_MAX}
    run: list[tuple[int, str]] = []  # consecutive non-null float/double fields: one pack
    for number, (name, kind, nullable, null_first, symbols) in enumerate(fields):
        lines.append(f"    v{number} = record[{name!r}]")
        if kind in _FIXED and not nullable:
            run.append((number, _FIXED[kind]))
            continue
        _flush_run(run, lines, namespace)
        body = _value_lines(number, kind, symbols, namespace)
        if nullable:
            index_null, index_value = (0, 1) if null_first else (1, 0)
            lines.append(f"    if v{number} is None:")
            lines.append(f"        add(ONE[{index_null * 2}])")
            lines.append("    else:")
            lines.append(f"        add(ONE[{index_value * 2}])")
            lines += ["        " + line for line in body]
        else:
            lines += ["    " + line for line in body]
    _flush_run(run, lines, namespace)
    lines.append("    return b''.join(parts)")
    exec("\n".join(lines), namespace)  # noqa: S102 - source built from the schema above
    generated: Callable[[Mapping[str, Any], bytes], bytes] = namespace["write"]
    return generated


def _flush_run(run: list[tuple[int, str]], lines: list[str], namespace: dict[str, Any]) -> None:
    if not run:
        return
    codes = "".join(code for _, code in run)
    packer = f"pack_{codes}"
    namespace[packer] = struct.Struct("<" + codes).pack
    names = [f"v{number}" for number, _ in run]
    for name, (_, code) in zip(names, run, strict=True):
        lines.append(f"    if type({name}) is not float and type({name}) is not int:")
        lines.append("        raise Misfit")
        if code == "f":  # struct refuses floats beyond float32; fastavro writes them as inf
            lines.append(f"    if not -3.4028234663852886e38 <= {name} <= 3.4028234663852886e38:")
            lines.append("        raise Misfit")
    lines.append(f"    add({packer}({', '.join(names)}))")
    run.clear()


def _value_lines(number: int, kind: str, symbols: tuple[str, ...],
                 namespace: dict[str, Any]) -> list[str]:
    v = f"v{number}"
    if kind == "null":
        return [f"if {v} is not None:", "    raise Misfit"]
    if kind == "boolean":
        return [f"if {v} is True:", "    add(b'\\x01')", f"elif {v} is False:",
                "    add(b'\\x00')", "else:", "    raise Misfit"]
    if kind in ("int", "long"):
        low, high = ("INT_MIN", "INT_MAX") if kind == "int" else ("LONG_MIN", "LONG_MAX")
        return [f"if type({v}) is not int or not {low} <= {v} <= {high}:", "    raise Misfit",
                f"add(varint(({v} << 1) ^ ({v} >> 63)))"]
    if kind in _FIXED:
        namespace[f"pack_{kind}"] = struct.Struct("<" + _FIXED[kind]).pack
        check = ([f"if not -3.4028234663852886e38 <= {v} <= 3.4028234663852886e38:",
                  "    raise Misfit"] if kind == "float" else [])
        return [f"if type({v}) is not float and type({v}) is not int:", "    raise Misfit",
                *check, f"add(pack_{kind}({v}))"]
    if kind in ("string", "bytes"):
        wanted, data = ("str", f"{v}.encode()") if kind == "string" else ("bytes", v)
        return [f"if type({v}) is not {wanted}:", "    raise Misfit", f"b{number} = {data}",
                f"size = len(b{number})",
                "add(ONE[size << 1] if size < 64 else varint(size << 1))", f"add(b{number})"]
    table = f"enum_{number}"  # kind == "enum"
    namespace[table] = {s: varint(i << 1) for i, s in enumerate(symbols)}
    return [f"if type({v}) is not str:", "    raise Misfit", f"add({table}[{v}])"]
