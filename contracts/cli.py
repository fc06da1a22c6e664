"""``respublica contracts validate|show`` as pure functions: arguments in, (exit code, text) out.

``broker/cli/contracts.py`` wires them into argparse and prints the text. The clock is read
here, at the edge, and only when the caller does not pass ``now``.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

from contracts.describe import describe_contract
from contracts.errors import ContractError, Problem
from contracts.links import link_warnings
from contracts.loader import load_contracts
from contracts.model import Contract


def validate(
    paths: Sequence[Path | str], *, now: datetime | None = None, allow_outside: bool = False
) -> tuple[int, str]:
    """Exit code 0 and ``OK: ...`` when every contract is valid, else 1 and every problem.

    A valid contract may still get warnings (exit code 0): linked views that secondary
    suppression cannot protect, or only at a cost (``contracts.links.link_warnings``)."""
    try:
        contracts = load_contracts(paths, now=now or datetime.now(UTC), allow_outside=allow_outside)
    except ContractError as exc:
        files = len({problem.file for problem in exc.problems})
        summary = f"FAILED: {len(exc.problems)} problem(s) in {files} file(s)"
        return 1, f"{exc}\n{summary}"
    ids = ", ".join(contract.id for contract in contracts)
    warnings = [
        f"warning: {contract.source or contract.id}:{path}: {message}"
        for contract in contracts
        for path, message in link_warnings(contract)
    ]
    return 0, "\n".join([*warnings, f"OK: {len(contracts)} contracts valid ({ids})"])


def show(
    id_or_path: str | Path,
    search_paths: Sequence[Path | str],
    *,
    now: datetime | None = None,
    allow_outside: bool = False,
) -> str:
    """Plain-language summary of one contract, given by file path or by id.

    Raises ``ContractError`` if the contract is invalid or no contract has that id.
    """
    contract = find_contract(
        id_or_path, search_paths, now=now or datetime.now(UTC), allow_outside=allow_outside
    )
    return describe_contract(contract)


def find_contract(
    id_or_path: str | Path,
    search_paths: Sequence[Path | str],
    *,
    now: datetime,
    allow_outside: bool = False,
) -> Contract:
    """The contract in file ``id_or_path``, or the one with that id in ``search_paths``."""
    path = Path(id_or_path)
    if path.is_file():
        return load_contracts([path], now=now, allow_outside=allow_outside)[0]
    for contract in load_contracts(search_paths, now=now, allow_outside=allow_outside):
        if contract.id == str(id_or_path):
            return contract
    where = ", ".join(str(p) for p in search_paths) or "(no search path)"
    message = f"no contract with id {id_or_path} in {where}"
    raise ContractError([Problem(str(id_or_path), "", message)])
