"""The root of respublica's exception tree, and contract validation errors.

Every error that respublica raises on purpose derives from ``RespublicaError`` (defined here,
in the lowest layer, so every package can use it) and the CLI catches that one type. Each
package adds a small subtree (``ContractError`` here, ``PolicyError``, ``ConnectorError``...).
Library errors are translated at the boundary with ``raise ... from exc``.

Contract validation reports every problem in every file at once.

A ``Problem`` names the file, the dotted path inside the contract (``views[1].k``) and what is
wrong. Messages never contain a value taken from the contract or its data, so they are safe to
print, log and show to a provider.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import NamedTuple


class RespublicaError(Exception):
    """Base class of every error raised deliberately by respublica."""


class Issue(NamedTuple):
    """A problem inside one contract: dotted path and message (the loader adds the file)."""

    path: str
    message: str


@dataclass(frozen=True, order=True)
class Problem:
    """One thing wrong with one contract file."""

    file: str
    path: str
    message: str

    def __str__(self) -> str:
        location = f"{self.file}:{self.path}" if self.path else self.file
        return f"{location}: {self.message}"


class ContractError(RespublicaError):
    """One or more contracts are invalid; ``problems`` lists every one of them."""

    def __init__(self, problems: Iterable[Problem]) -> None:
        self.problems: list[Problem] = list(problems)
        super().__init__(str(self))

    def __str__(self) -> str:
        return "\n".join(str(problem) for problem in self.problems)
