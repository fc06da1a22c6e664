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

``compile_reader`` is the other direction, for the same schemas: one generated function reads
a record from the framed value (``fastavro.schemaless_reader`` with a ``BytesIO`` per record
was 13% of a policy worker's CPU). It returns exactly fastavro's record when the input is a
well-formed record, and raises on anything else, so that ``broker.kafka.serde.decode_body`` lets
fastavro read the value again and report the failure as it always has;
``tests/connectors/test_avro_reader.py`` compares both on valid, edge and damaged input.
"""

from __future__ import annotations

import io
import struct
from collections.abc import Callable, Mapping
from functools import cache
from typing import Any

import fastavro

BodyWriter = Callable[[Mapping[str, Any]], bytes]
INT_MIN, INT_MAX = -(2**31), 2**31 - 1
LONG_MIN, LONG_MAX = -(2**63), 2**63 - 1
_ONE_BYTE = [bytes((n,)) for n in range(128)]
_FIXED = {"float": "f", "double": "d"}  # struct codes of the fixed-size types
_SCALARS = frozenset({"null", "boolean", "int", "long", "float", "double", "string", "bytes"})


class _Misfit(Exception):  # noqa: N818 - internal signal: "let fastavro decide"
    """A value (or encoded input) the fast path does not take; fastavro decides instead."""


def varint(n: int) -> bytes:
    """The base-128 varint of a non-negative int (an already zigzagged long)."""
    if n < 0x80:
        return _ONE_BYTE[n]
    if n < 0x4000:
        return bytes((n & 0x7F | 0x80, n >> 7))
    if 0x800000000 <= n < 0x40000000000:  # epoch milliseconds, zigzagged: 6 bytes
        return bytes(
            (
                n & 0x7F | 0x80,
                n >> 7 & 0x7F | 0x80,
                n >> 14 & 0x7F | 0x80,
                n >> 21 & 0x7F | 0x80,
                n >> 28 & 0x7F | 0x80,
                n >> 35,
            )
        )
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
    namespace: dict[str, Any] = {
        "varint": varint,
        "ONE": _ONE_BYTE,
        "Misfit": _Misfit,
        "LONG_MIN": LONG_MIN,
        "LONG_MAX": LONG_MAX,
        "INT_MIN": INT_MIN,
        "INT_MAX": INT_MAX,
    }
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


def _value_lines(
    number: int, kind: str, symbols: tuple[str, ...], namespace: dict[str, Any]
) -> list[str]:
    v = f"v{number}"
    if kind == "null":
        return [f"if {v} is not None:", "    raise Misfit"]
    if kind == "boolean":
        return [
            f"if {v} is True:",
            "    add(b'\\x01')",
            f"elif {v} is False:",
            "    add(b'\\x00')",
            "else:",
            "    raise Misfit",
        ]
    if kind in ("int", "long"):
        low, high = ("INT_MIN", "INT_MAX") if kind == "int" else ("LONG_MIN", "LONG_MAX")
        return [
            f"if type({v}) is not int or not {low} <= {v} <= {high}:",
            "    raise Misfit",
            f"add(varint(({v} << 1) ^ ({v} >> 63)))",
        ]
    if kind in _FIXED:
        namespace[f"pack_{kind}"] = struct.Struct("<" + _FIXED[kind]).pack
        check = (
            [f"if not -3.4028234663852886e38 <= {v} <= 3.4028234663852886e38:", "    raise Misfit"]
            if kind == "float"
            else []
        )
        return [
            f"if type({v}) is not float and type({v}) is not int:",
            "    raise Misfit",
            *check,
            f"add(pack_{kind}({v}))",
        ]
    if kind in ("string", "bytes"):
        wanted, data = ("str", f"{v}.encode()") if kind == "string" else ("bytes", v)
        return [
            f"if type({v}) is not {wanted}:",
            "    raise Misfit",
            f"b{number} = {data}",
            f"size = len(b{number})",
            "add(ONE[size << 1] if size < 64 else varint(size << 1))",
            f"add(b{number})",
        ]
    table = f"enum_{number}"  # kind == "enum"
    namespace[table] = {s: varint(i << 1) for i, s in enumerate(symbols)}
    return [f"if type({v}) is not str:", "    raise Misfit", f"add({table}[{v}])"]


# --- Reading -------------------------------------------------------------------------------

BodyReader = Callable[[bytes, int], dict[str, Any]]
_ZIGZAG = tuple((n >> 1) ^ -(n & 1) for n in range(128))  # the long of a one-byte varint
_SIZE = tuple(-1 if n & 1 else n >> 1 for n in range(128)) + (-1,) * 128  # -1: not one byte
_THREE_PAIRS = struct.Struct("<3H").unpack_from


def compile_reader(parsed_schema: Any) -> BodyReader | None:
    """A function reading a flat record from ``data[start:]``, for a flat record schema; else None.

    ``read(data, start)`` returns the dict ``fastavro.schemaless_reader`` returns for the same
    bytes (fields in schema order, same Python types), and requires the record to end exactly
    at ``len(data)``. It raises on anything it does not take: damaged input (truncated, bad
    union or enum index, invalid UTF-8, trailing bytes), and also input fastavro reads with
    a leniency of its own (a negative length, a length running past the end, which fastavro
    cuts short, a varint beyond 10 bytes, a union index not written as one byte). The caller
    then asks fastavro, whose answer (record or exception) is authoritative.
    """
    fields = _flat_fields(parsed_schema)
    if fields is None:
        return None
    return _generate_reader(fields)


def long_at(data: bytes, i: int) -> tuple[int, int]:
    """The zigzag long starting at ``data[i]`` and the offset after it.

    Raises ``_Misfit`` beyond what fastavro's ``read_long`` decodes as we do: more than 10
    bytes, or a 10th byte carrying more than the 64th bit (fastavro drops those bits).
    """
    b = data[i]
    if b < 0x80:
        return _ZIGZAG[b], i + 1
    c = data[i + 1]
    if c < 0x80:
        n = b & 0x7F | c << 7
        return (n >> 1) ^ -(n & 1), i + 2
    n = b & 0x7F
    shift = 7
    i += 1
    while b & 0x80:
        b = data[i]
        i += 1
        n |= (b & 0x7F) << shift
        shift += 7
        if shift > 63 and b > 1:  # the 10th byte: only its lowest bit fits in 64
            raise _Misfit
    return (n >> 1) ^ -(n & 1), i


@cache
def _pair_tables() -> tuple[list[int], list[int]]:
    """Tables reading a six-byte varint (epoch milliseconds, zigzagged) two bytes at a time.

    The 14 bits of a pair of bytes that both continue, and of a final pair whose second byte
    ends the varint; -1 where the continuation bits do not fit, which stays negative through
    ``|`` and ``<<``. Built on first use (about 25 ms, 1.6 MB), shared by every reader.
    """
    bits = list(range(1 << 14))  # one int object per value, shared by both tables
    pair = [
        bits[w & 0x7F | (w >> 8 & 0x7F) << 7] if w & 0x8080 == 0x8080 else -1
        for w in range(1 << 16)
    ]
    pair_end = [
        bits[w & 0x7F | (w >> 8) << 7] if w & 0x8080 == 0x80 else -1 for w in range(1 << 16)
    ]
    return pair, pair_end


def size_at(data: bytes, i: int) -> tuple[int, int]:
    """The length (a long) of a string or bytes at ``data[i]``, and the offset after it.

    fastavro reads what remains for a negative length: ``_Misfit``, let it.
    """
    size, i = long_at(data, i)
    if size < 0:
        raise _Misfit
    return size, i


def _generate_reader(fields: list[_Field]) -> BodyReader:
    """Source of one function reading every field, compiled with ``exec``.

    ``i`` is the read offset; it only grows (negative lengths are refused), so a string or
    bytes length running past the end, which slicing would silently cut, makes the final
    ``i != len(data)`` check fail. Field names reach the source only as ``repr`` literals.
    """
    lines = ["def read(data, i):"]
    namespace: dict[str, Any] = {
        "long_at": long_at,
        "size_at": size_at,
        "Misfit": _Misfit,
        "ZIGZAG": _ZIGZAG,
        "SIZE": _SIZE,
    }
    run: list[tuple[int, str]] = []  # consecutive non-null float/double fields: one unpack
    for number, (_, kind, nullable, null_first, symbols) in enumerate(fields):
        if kind in _FIXED and not nullable:
            run.append((number, _FIXED[kind]))
            continue
        _flush_unpack(run, lines, namespace)
        # A long of two bytes or more, then the fields after it: if those take 4 bytes or
        # more in any valid record, six bytes can be unpacked at the long without a length
        # check (a struct.error is then damaged input, and fastavro reads it again).
        six_fit = sum(_min_size(field) for field in fields[number + 1 :]) >= 4
        body = _read_lines(number, kind, symbols, namespace, six_fit=six_fit)
        if not nullable:
            lines += ["    " + line for line in body]
            continue
        byte_null, byte_value = (0, 2) if null_first else (2, 0)  # branch index, zigzagged
        lines += [
            "    b = data[i]",
            "    i += 1",
            f"    if b == {byte_null}:",
            f"        v{number} = None",
            f"    elif b == {byte_value}:",
        ]
        lines += ["        " + line for line in body]
        lines += ["    else:", "        raise Misfit"]
    _flush_unpack(run, lines, namespace)
    items = ", ".join(f"{name!r}: v{number}" for number, (name, *_) in enumerate(fields))
    lines += ["    if i != len(data):", "        raise Misfit", f"    return {{{items}}}"]
    exec("\n".join(lines), namespace)  # noqa: S102 - source built from the schema above
    generated: BodyReader = namespace["read"]
    return generated


def _flush_unpack(run: list[tuple[int, str]], lines: list[str], namespace: dict[str, Any]) -> None:
    if not run:
        return
    codes = "".join(code for _, code in run)
    unpacker = f"unpack_{codes}"
    namespace[unpacker] = struct.Struct("<" + codes).unpack_from
    names = "".join(f"v{number}, " for number, _ in run)
    lines.append(f"    {names}= {unpacker}(data, i)")
    lines.append(f"    i += {struct.calcsize('<' + codes)}")
    run.clear()


def _min_size(field: _Field) -> int:
    """The fewest bytes a valid value of the field takes."""
    _, kind, nullable, _, _ = field
    return 1 if nullable else {"null": 0, "float": 4, "double": 8}.get(kind, 1)


def _read_lines(
    number: int, kind: str, symbols: tuple[str, ...], namespace: dict[str, Any], *, six_fit: bool
) -> list[str]:
    v = f"v{number}"
    if kind == "null":
        return [f"{v} = None"]
    if kind == "boolean":  # fastavro: any byte but 0 is True
        return [f"{v} = data[i] != 0", "i += 1"]
    if kind in ("int", "long"):  # fastavro reads an int as a long, without a range check
        one_byte = ["b = data[i]", "if b < 0x80:", f"    {v} = ZIGZAG[b]", "    i += 1"]
        if kind == "int" or not six_fit:
            return [*one_byte, "else:", f"    {v}, i = long_at(data, i)"]
        namespace["PAIR"], namespace["PAIR_END"] = _pair_tables()
        namespace["THREE_PAIRS"] = _THREE_PAIRS
        return [
            *one_byte,
            "else:",
            "    w0, w1, w2 = THREE_PAIRS(data, i)",
            "    n = PAIR[w0] | PAIR[w1] << 14 | PAIR_END[w2] << 28",
            "    if n >= 0:",
            f"        {v} = (n >> 1) ^ -(n & 1)",
            "        i += 6",
            "    else:",
            f"        {v}, i = long_at(data, i)",
        ]
    if kind in _FIXED:
        namespace[f"unpack_{_FIXED[kind]}"] = struct.Struct("<" + _FIXED[kind]).unpack_from
        return [f"{v}, = unpack_{_FIXED[kind]}(data, i)", f"i += {4 if kind == 'float' else 8}"]
    if kind in ("string", "bytes"):
        value = "data[i:i + size].decode()" if kind == "string" else "bytes(data[i:i + size])"
        return [
            "size = SIZE[data[i]]",
            "if size >= 0:",
            "    i += 1",
            "else:",
            "    size, i = size_at(data, i)",
            f"{v} = {value}",
            "i += size",
        ]
    table = f"symbols_{number}"  # kind == "enum"
    namespace[table] = symbols
    return [
        "b = data[i]",
        f"if b < 0x80 and not b & 1 and b >> 1 < {len(symbols)}:",
        f"    {v} = {table}[b >> 1]",
        "    i += 1",
        "else:",
        "    index, i = long_at(data, i)",
        f"    if not 0 <= index < {len(symbols)}:",
        "        raise Misfit",
        f"    {v} = {table}[index]",
    ]
