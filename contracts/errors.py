"""Contract validation errors: every problem in every file, reported at once.

A ``Problem`` names the file, the dotted path inside the contract (``views[1].k``) and what is
wrong. Messages never contain a value taken from the contract or its data, so they are safe to
print, log and show to a provider.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from broker.errors import RespublicaError


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
