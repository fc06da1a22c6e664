"""How deep and how big a contract and the files it refers to may be.

A hostile contract or referenced file must be a listed problem, never a crash: Python's
parsers build nested collections recursively (RecursionError past ~1,000 levels), and the
checks that walk the result recurse too. Data is therefore walked once, without recursion,
before anything else looks at it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

MAX_DEPTH = 64  # a contract is about 10 deep (an inline polygon or schema a little more)
MAX_VALUES = 1_000_000  # values after YAML aliases expand (a "billion laughs" file)
MAX_FILE_BYTES = 16 * 2**20  # a referenced schema, territory or zones file
TOO_DEEP = f"nested deeper than {MAX_DEPTH} levels"


def size_problem(data: Any, max_values: int | None = MAX_VALUES) -> str | None:
    """Why the data is too deep or has too many values to check, or None."""
    stack: list[tuple[Any, int]] = [(data, 1)]
    values = 0
    while stack:
        value, depth = stack.pop()
        values += 1
        if max_values is not None and values > max_values:
            return f"more than {max_values} values (YAML aliases that expand without end?)"
        if depth > MAX_DEPTH:
            return TOO_DEEP
        if isinstance(value, Mapping):
            stack.extend((item, depth + 1) for pair in value.items() for item in pair)
        elif isinstance(value, list | tuple):
            stack.extend((item, depth + 1) for item in value)
    return None
