"""Pydantic's shape errors as contract problems that say the fix, and unknown keys set aside.

An unknown key (``allowed_latency`` for ``allowed_lateness``) is reported with the keys
allowed at that level, and a close one if there is; the loader then validates the contract
without it (``without_unknown_keys``), so a typo never hides the semantic problems. Messages
name the rule and the fix, never the input value: ``errors(include_input=False)``, and
pydantic's wording only where it is already plain ("Input should be 'geometric' or
'laplace'"). A key of the file is named in a path only when it looks like a key (letters,
digits, ``_`` and ``-``, at most 64): anything else, an escape sequence say, shows as ``?``.
"""

from __future__ import annotations

import copy
import difflib
import re
import types
from collections.abc import Mapping, Sequence
from typing import Annotated, Any, Literal, Union, get_args, get_origin

from pydantic import BaseModel, ValidationError

from contracts.errors import Problem
from contracts.model import Contract

# Discriminator tags and union branch names that pydantic inserts in error locations.
_UNION_BRANCHES = frozenset(
    {
        "field",
        "h3",
        "grid",
        "zones",
        "round",
        "count",
        "distinct_subjects",
        "distinct",
        "sum",
        "mean",
        "quantiles",
        "str",
        "int",
        "float",
        "bool",
        "dict[str,any]",
    }
)
# What a key must look like to be echoed in a path (connectors/conform.py's rule, plus "-",
# which a misspelt contract key often has): never a control character, never a long value.
_SAFE_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_-]{0,63}\Z")
# Pydantic error types whose fix we can say in our own words.
_PLAIN = {
    "missing": "required field is missing",
    "union_tag_not_found": "needs a 'type'",
    "int_type": "must be a whole number",
    "int_parsing": "must be a whole number",
    "int_from_float": "must be a whole number",
    "float_type": "must be a number",
    "float_parsing": "must be a number",
    "string_type": "must be a text",
    "bool_type": "must be true or false",
    "bool_parsing": "must be true or false",
    "tuple_type": "must be a list",
    "list_type": "must be a list",
    "dict_type": "must be a mapping (key: value)",
    "model_type": "must be a mapping (key: value)",
    "model_attributes_type": "must be a mapping (key: value)",
    "timezone_aware": "needs a timezone, e.g. 2026-01-01T00:00:00Z",
    "datetime_type": "must be a date and time, e.g. 2026-01-01T00:00:00Z",
    "datetime_parsing": "must be a date and time, e.g. 2026-01-01T00:00:00Z",
    "datetime_from_date_parsing": "must be a date and time, e.g. 2026-01-01T00:00:00Z",
    "finite_number": "must be a finite number",
}


def shape_problems(exc: ValidationError, file: str) -> list[Problem]:
    """Translate pydantic errors into problems; one per path, without the input value."""
    problems: dict[str, Problem] = {}
    errors = exc.errors(include_input=False, include_url=False)
    locations = [tuple(error["loc"]) for error in errors]
    for error in errors:
        loc = tuple(error["loc"])
        if error["type"] == "too_short" and _has_item_error(loc, locations):
            continue  # pydantic adds "too short" after an item failed: the item error says it
        path = render_path(loc)
        problems.setdefault(path, Problem(file, path, _message(error)))
    return list(problems.values())


def without_unknown_keys(data: Mapping[str, Any], exc: ValidationError) -> Contract | None:
    """The contract validated with its unknown keys removed; None if anything else is wrong."""
    errors = exc.errors(include_input=False, include_url=False)
    unknown = [tuple(e["loc"]) for e in errors if e["type"] == "extra_forbidden"]
    if not unknown or any(not _follows(error, unknown) for error in errors):
        return None
    cleaned = copy.deepcopy(dict(data))
    for loc in unknown:
        _delete(cleaned, _data_path(loc))
    try:
        return Contract.model_validate(cleaned)
    except ValidationError:
        return None


def render_path(loc: Sequence[int | str]) -> str:
    """Dotted path of a pydantic location.

    ``('views', 0, 'group_by', 1, 'h3', 'resolution')`` -> ``views[0].group_by[1].resolution``.
    """
    text = ""
    for part in _data_path(loc):
        if isinstance(part, int):
            text += f"[{part}]"
        else:
            shown = part if _SAFE_KEY.match(part) else "?"
            text += f".{shown}" if text else shown
    return text


def _data_path(loc: Sequence[int | str]) -> list[int | str]:
    """The location without the union branch names pydantic inserts."""
    return [part for index, part in enumerate(loc) if not _is_union_branch(loc, index)]


def _is_union_branch(loc: Sequence[int | str], index: int) -> bool:
    """Pydantic names the union branch after an index (tags) or a union-typed key (types)."""
    part = loc[index]
    return (
        index > 0
        and part in _UNION_BRANCHES
        and (isinstance(loc[index - 1], int) or part in {"str", "dict[str,any]"})
    )


def _follows(error: Any, unknown: list[tuple[int | str, ...]]) -> bool:
    """An unknown key, or the "too short" pydantic adds when an item had one."""
    loc = tuple(error["loc"])
    if error["type"] == "extra_forbidden":
        return True
    return error["type"] == "too_short" and _has_item_error(loc, unknown)


def _has_item_error(loc: tuple[int | str, ...], locations: list[tuple[int | str, ...]]) -> bool:
    """True when another error lies inside an item of the list at ``loc``."""
    size = len(loc)
    return any(
        len(other) > size and other[:size] == loc and isinstance(other[size], int)
        for other in locations
    )


def _delete(data: Any, path: list[int | str]) -> None:
    *parents, last = path
    for part in parents:
        data = data[part]
    if isinstance(data, dict):
        data.pop(last, None)


def _message(error: Any) -> str:
    kind = error["type"]
    ctx = error.get("ctx") or {}
    if kind == "extra_forbidden":
        return _unknown_key(tuple(error["loc"]))
    if kind in _PLAIN:
        return _PLAIN[kind]
    if kind == "union_tag_invalid":
        return f"unknown type; expected one of {ctx.get('expected_tags', '')}"
    if kind == "string_pattern_mismatch":
        return f"must match the pattern {ctx.get('pattern', '')}"
    if kind == "too_short":
        least = ctx.get("min_length", 1)
        return f"needs at least {least} item{'s' * (least != 1)}"
    if kind == "less_than_equal":
        return f"must be at most {ctx.get('le', '')}"
    if kind == "greater_than_equal":
        return f"must be at least {ctx.get('ge', '')}"
    message = str(error["msg"])
    # Our own validators raise ValueError("..."): drop pydantic's "Value error, " prefix.
    return message.removeprefix("Value error, ")


def _unknown_key(loc: tuple[int | str, ...]) -> str:
    allowed = _allowed_keys(loc[:-1])
    if not allowed:
        return "unknown key (not part of the contract format)"
    close = difflib.get_close_matches(str(loc[-1]), allowed, n=1, cutoff=0.6)
    hint = f" (did you mean {close[0]}?)" if close else ""
    return f"unknown key{hint}; allowed here: {', '.join(allowed)}"


def _allowed_keys(loc: tuple[int | str, ...]) -> list[str]:
    """The YAML keys of the model at ``loc`` (empty if it cannot be told)."""
    annotation: Any = Contract
    for index, part in enumerate(loc):
        if isinstance(part, int):
            annotation = _item_type(annotation)
        elif _is_union_branch(loc, index):
            annotation = next((m for m in _models(annotation) if _tag(m) == part), None)
        else:
            model = _one_model(annotation)
            field = _field(model, part) if model is not None else None
            annotation = field
        if annotation is None:
            return []
    model = _one_model(annotation)
    if model is None:
        return []
    return [info.alias or name for name, info in model.model_fields.items()]


def _field(model: type[BaseModel], key: str) -> Any:
    for name, info in model.model_fields.items():
        if key in (name, info.alias):
            return info.annotation
    return None


def _item_type(annotation: Any) -> Any:
    annotation = _strip(annotation)
    args = get_args(annotation)
    if get_origin(annotation) in (tuple, list) and args:
        return args[0]
    return None


def _models(annotation: Any) -> list[type[BaseModel]]:
    annotation = _strip(annotation)
    if get_origin(annotation) in (Union, types.UnionType):
        return [m for arg in get_args(annotation) for m in _models(arg)]
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    return []


def _one_model(annotation: Any) -> type[BaseModel] | None:
    models = _models(annotation)
    return models[0] if len(models) == 1 else None


def _tag(model: type[BaseModel]) -> str | None:
    field = model.model_fields.get("type")
    if field is None or get_origin(field.annotation) is not Literal:
        return None
    return str(get_args(field.annotation)[0])


def _strip(annotation: Any) -> Any:
    while get_origin(annotation) is Annotated:
        annotation = get_args(annotation)[0]
    return annotation
