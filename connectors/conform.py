"""Check a JSON object against an Avro schema, field by field, and normalise it for writing.

``record_conformer(parsed_schema)`` compiles the schema once into nested closures; calling the
result on a decoded JSON object returns a record fastavro can write, or raises
``FieldProblem(reason, path)``. Compiling once keeps the per-event cost to a few dict lookups
and type tests, and it lets every problem name its field path (``battery_pct``,
``trip.legs[]``), which fastavro's own validation cannot do.

JSON has fewer types than Avro, so the rules are: a JSON integer fits ``int``/``long`` when in
range, and fits ``float``/``double`` (converted); a JSON number with a fraction never fits an
integer type; booleans are not numbers; a missing field takes its schema default if it has
one; a field the schema does not name is rejected (default deny starts at the door).
Problems never carry the offending value, only its path.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping
from typing import Any

from broker.kafka.reasons import Reason

Conformer = Callable[[Any], Any]

INT_MIN, INT_MAX = -(2**31), 2**31 - 1
LONG_MIN, LONG_MAX = -(2**63), 2**63 - 1
FLOAT_MAX = 3.4028234663852886e38
_INFINITIES = (math.inf, -math.inf)
# An unknown key is named in the rejection only when it looks like a field name, because a
# provider could key an object by an identifier; anything else is reported as "?".
_SAFE_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,63}\Z")


class FieldProblem(Exception):  # noqa: N818 - control flow inside the validator, not an error API
    """A value does not fit its field: the reason and the field path, never the value."""

    def __init__(self, reason: Reason, path: str) -> None:
        super().__init__(reason.value)
        self.reason = reason
        self.path = path


def record_conformer(parsed_schema: Mapping[str, Any]) -> Conformer:
    """The conformer of a top-level record schema (fastavro-parsed or raw)."""
    named = dict(parsed_schema.get("__named_schemas", {}))
    return _compile(dict(parsed_schema), "", named)


def _compile(avro_type: Any, path: str, named: dict[str, Any]) -> Conformer:
    if isinstance(avro_type, list):
        non_null = [_compile(t, path, named) for t in avro_type if t != "null"]
        return _union(non_null, "null" in avro_type, path)
    if isinstance(avro_type, str):
        if avro_type in _PRIMITIVES:
            return _PRIMITIVES[avro_type](path)
        if avro_type in named:
            return _compile(named[avro_type], path, named)
        return _never(path)
    if isinstance(avro_type, Mapping):
        kind = avro_type.get("type")
        builder = _COMPLEX.get(str(kind))
        if builder is not None:
            return builder(avro_type, path, named)
        return _compile(kind, path, named)  # {"type": "long", "logicalType": ...}
    return _never(path)


def _record(schema: Mapping[str, Any], path: str, named: dict[str, Any]) -> Conformer:
    prefix = f"{path}." if path else ""
    fields = [
        (
            f["name"],
            _compile(f["type"], prefix + f["name"], named),
            "default" in f,
            f.get("default"),
            prefix + f["name"],
        )
        for f in schema.get("fields", [])
    ]
    names = frozenset(f[0] for f in fields)
    not_object = Reason.WRONG_TYPE if path else Reason.NOT_AN_OBJECT

    def conform(value: Any) -> dict[str, Any]:
        if not isinstance(value, Mapping):
            raise FieldProblem(not_object, path)
        out: dict[str, Any] = {}
        present = 0
        for name, check, has_default, default, field_path in fields:
            if name in value:
                out[name] = check(value[name])
                present += 1
            elif has_default:
                out[name] = default
            else:
                raise FieldProblem(Reason.MISSING_FIELD, field_path)
        if len(value) > present:
            _reject_unknown(value, names, prefix)
        return out

    return conform


def _reject_unknown(value: Mapping[str, Any], names: frozenset[str], prefix: str) -> None:
    for key in value:
        if key not in names:
            shown = key if isinstance(key, str) and _SAFE_NAME.match(key) else "?"
            raise FieldProblem(Reason.UNKNOWN_FIELD, prefix + shown)


def _union(non_null: list[Conformer], nullable: bool, path: str) -> Conformer:
    if nullable and len(non_null) == 1:
        return _optional(non_null[0])

    def conform(value: Any) -> Any:
        if value is None:
            if nullable:
                return None
            raise FieldProblem(Reason.WRONG_TYPE, path)
        problem: FieldProblem | None = None
        for branch in non_null:
            try:
                return branch(value)
            except FieldProblem as exc:
                problem = exc
        # One candidate: its own reason (an int out of range stays OUT_OF_RANGE).
        if problem is not None and len(non_null) == 1:
            raise problem
        raise FieldProblem(Reason.WRONG_TYPE, path)

    return conform


def _optional(branch: Conformer) -> Conformer:
    """``["null", T]``, the common union: no loop, and T's own problem when it misfits."""

    def conform(value: Any) -> Any:
        return None if value is None else branch(value)

    return conform


def _null(path: str) -> Conformer:
    def conform(value: Any) -> None:
        if value is not None:
            raise FieldProblem(Reason.WRONG_TYPE, path)

    return conform


def _boolean(path: str) -> Conformer:
    def conform(value: Any) -> bool:
        if value is True or value is False:
            return bool(value)
        raise FieldProblem(Reason.WRONG_TYPE, path)

    return conform


def _integer(low: int, high: int) -> Callable[[str], Conformer]:
    def build(path: str) -> Conformer:
        def conform(value: Any) -> int:
            if type(value) is not int:  # bool is a subclass of int: not a number here
                raise FieldProblem(Reason.WRONG_TYPE, path)
            if not low <= value <= high:
                raise FieldProblem(Reason.OUT_OF_RANGE, path)
            return value

        return conform

    return build


def _real(limit: float) -> Callable[[str], Conformer]:
    def build(path: str) -> Conformer:
        def conform(value: Any) -> float:
            kind = type(value)
            if kind is float:  # the common case, no conversion needed
                if not -limit <= value <= limit or value in _INFINITIES:  # NaN fails too
                    raise FieldProblem(Reason.OUT_OF_RANGE, path)
                return value
            if kind is not int:
                raise FieldProblem(Reason.WRONG_TYPE, path)
            try:
                number = float(value)
            except OverflowError:
                raise FieldProblem(Reason.OUT_OF_RANGE, path) from None
            # JSON has no NaN/Infinity; 1e400 parses to inf, which no field may hold.
            if not math.isfinite(number) or abs(number) > limit:
                raise FieldProblem(Reason.OUT_OF_RANGE, path)
            return number

        return conform

    return build


def _string(path: str) -> Conformer:
    def conform(value: Any) -> str:
        if type(value) is not str:
            raise FieldProblem(Reason.WRONG_TYPE, path)
        if not value.isascii():
            try:
                value.encode("utf-8")  # a JSON "\ud800" escape is a lone surrogate
            except UnicodeEncodeError:
                raise FieldProblem(Reason.INVALID_UTF8, path) from None
        return value

    return conform


def _bytes(path: str) -> Conformer:
    def conform(value: Any) -> bytes:
        if isinstance(value, bytes):
            return value
        if type(value) is not str:
            raise FieldProblem(Reason.WRONG_TYPE, path)
        try:
            return value.encode("latin-1")  # Avro's JSON encoding of bytes: code points 0-255
        except UnicodeEncodeError:
            raise FieldProblem(Reason.OUT_OF_RANGE, path) from None

    return conform


def _never(path: str) -> Conformer:
    def conform(value: Any) -> Any:
        raise FieldProblem(Reason.WRONG_TYPE, path)

    return conform


def _enum(schema: Mapping[str, Any], path: str, named: dict[str, Any]) -> Conformer:
    symbols = frozenset(schema.get("symbols", ()))

    def conform(value: Any) -> str:
        if type(value) is not str:
            raise FieldProblem(Reason.WRONG_TYPE, path)
        if value not in symbols:
            raise FieldProblem(Reason.OUT_OF_RANGE, path)
        return value

    return conform


def _fixed(schema: Mapping[str, Any], path: str, named: dict[str, Any]) -> Conformer:
    size = int(schema.get("size", 0))
    as_bytes = _bytes(path)

    def conform(value: Any) -> bytes:
        data: bytes = as_bytes(value)
        if len(data) != size:
            raise FieldProblem(Reason.OUT_OF_RANGE, path)
        return data

    return conform


def _array(schema: Mapping[str, Any], path: str, named: dict[str, Any]) -> Conformer:
    item = _compile(schema.get("items"), f"{path}[]", named)

    def conform(value: Any) -> list[Any]:
        if not isinstance(value, list):
            raise FieldProblem(Reason.WRONG_TYPE, path)
        return [item(v) for v in value]

    return conform


def _map(schema: Mapping[str, Any], path: str, named: dict[str, Any]) -> Conformer:
    # Map keys are data, so the path of a map value never names its key.
    item = _compile(schema.get("values"), f"{path}.*", named)

    def conform(value: Any) -> dict[str, Any]:
        if not isinstance(value, Mapping) or not all(type(k) is str for k in value):
            raise FieldProblem(Reason.WRONG_TYPE, path)
        return {k: item(v) for k, v in value.items()}

    return conform


_PRIMITIVES: dict[str, Callable[[str], Conformer]] = {
    "null": _null,
    "boolean": _boolean,
    "int": _integer(INT_MIN, INT_MAX),
    "long": _integer(LONG_MIN, LONG_MAX),
    "float": _real(FLOAT_MAX),
    "double": _real(math.inf),
    "string": _string,
    "bytes": _bytes,
}
_COMPLEX: dict[str, Callable[[Mapping[str, Any], str, dict[str, Any]], Conformer]] = {
    "record": _record,
    "error": _record,
    "enum": _enum,
    "fixed": _fixed,
    "array": _array,
    "map": _map,
}
