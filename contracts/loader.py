"""Read contract files into validated ``Contract`` models, reporting every problem at once.

Passes per file: YAML -> pydantic shape validation (``contracts.shape``) -> external references
(schemas, polygons) -> semantic checks; an unknown key is reported and set aside, so it never
hides a semantic problem. Then ids are compared across files. All problems of all files
are gathered into one ``ContractError``, so a broker operator fixes everything in one go.
The clock is a parameter (``now``): validation never reads it. Referenced files must lie in
the contract's folder (``contracts.resolve``) unless ``allow_outside=True``.

A hostile file is a listed problem, never a crash: YAML nested deeper than ``MAX_DEPTH`` or
whose aliases expand to more than ``MAX_VALUES`` values, a value YAML cannot build (a date
that does not exist, an integer of more than 4300 digits; named by line), and no control
character of the file reaches a message (``_printable``).
"""

from __future__ import annotations

import unicodedata
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from contracts.checks import run_checks
from contracts.errors import ContractError, Problem
from contracts.limits import TOO_DEEP, size_problem
from contracts.model import Contract
from contracts.resolve import resolve_references
from contracts.shape import shape_problems, without_unknown_keys

CONTRACT_SUFFIXES = (".yaml", ".yml")


def load_contracts(
    paths: Sequence[Path | str], *, now: datetime, allow_outside: bool = False
) -> list[Contract]:
    """Load contract files and directories (``*.yaml``/``*.yml``, non-recursive, sorted).

    ``allow_outside`` lets a contract read schema, zone and territory files outside its folder.
    Raises ``ContractError`` listing every problem in every file.
    """
    problems: list[Problem] = []
    contracts: list[Contract] = []
    for file in _contract_files(paths, problems):
        contract, file_problems = _load_file(file, now, allow_outside)
        problems.extend(file_problems)
        if contract is not None:
            contracts.append(contract)
    problems.extend(_duplicate_ids(contracts))
    if problems:
        raise ContractError(_printable(p) for p in problems)
    return contracts


def parse_contract(
    data: Mapping[str, Any],
    *,
    base_dir: Path | str,
    now: datetime,
    file: str = "<contract>",
    allow_outside: bool = False,
) -> Contract:
    """Validate one contract given as a dict (as read from YAML); files resolve from base_dir
    and must lie inside it unless ``allow_outside``."""
    contract, problems = _build(data, Path(base_dir), now, file, allow_outside)
    if problems or contract is None:
        raise ContractError(_printable(p) for p in problems)
    return contract


def _contract_files(paths: Sequence[Path | str], problems: list[Problem]) -> list[Path]:
    files: list[Path] = []
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            found = sorted(p for p in path.iterdir() if p.suffix in CONTRACT_SUFFIXES)
            if not found:
                problems.append(Problem(str(path), "", "no *.yaml or *.yml contract in directory"))
            files.extend(found)
        elif path.is_file():
            files.append(path)
        else:
            problems.append(Problem(str(path), "", "file not found"))
    return files


def _load_file(
    path: Path, now: datetime, allow_outside: bool
) -> tuple[Contract | None, list[Problem]]:
    try:
        data = _read_yaml(path)
    except _YamlProblem as exc:
        return None, [Problem(str(path), "", str(exc))]
    contract, problems = _build(data, path.parent, now, str(path), allow_outside)
    if contract is not None:
        contract._bind_source(path)
    return contract, problems


def _build(
    data: Mapping[str, Any], base_dir: Path, now: datetime, file: str, allow_outside: bool
) -> tuple[Contract | None, list[Problem]]:
    """Shape, then references, then semantics.

    Unknown keys are set aside so that the references and semantics are still checked; any
    other shape problem (a missing field, a wrong type) stops there: the later passes need it.
    """
    too_big = size_problem(data)
    if too_big is not None:
        return None, [Problem(file, "", too_big)]
    shape: list[Problem] = []
    try:
        contract: Contract | None = Contract.model_validate(data)
    except ValidationError as exc:
        shape = shape_problems(exc, file)
        contract = without_unknown_keys(data, exc)
    if contract is None:
        return None, shape
    references = resolve_references(contract, base_dir, allow_outside=allow_outside)
    issues = references + run_checks(contract, now)
    problems = shape + [Problem(file, issue.path, issue.message) for issue in issues]
    return (None if problems else contract), problems


def _printable(problem: Problem) -> Problem:
    """The problem with every control or format character (ESC, BiDi overrides) as ``?``."""
    return Problem(*(_scrub(text) for text in (problem.file, problem.path, problem.message)))


def _scrub(text: str) -> str:
    return "".join("?" if unicodedata.category(c).startswith("C") else c for c in text)


def _duplicate_ids(contracts: Iterable[Contract]) -> list[Problem]:
    first: dict[str, Contract] = {}
    problems = []
    for contract in contracts:
        earlier = first.setdefault(contract.id, contract)
        if earlier is not contract:
            other = str(earlier.source) if earlier.source else "another file"
            message = f"duplicate contract id (also defined in {other})"
            problems.append(Problem(str(contract.source), "id", message))
    return problems


# --- YAML ---------------------------------------------------------------------------------


class _YamlProblem(Exception):
    """The file is not a usable YAML mapping; the message is one of ours."""


class _StrictLoader(yaml.SafeLoader):
    """Safe YAML that refuses duplicate keys: a second ``k:`` silently winning is a trap."""

    def construct_object(self, node: yaml.Node, deep: bool = False) -> Any:
        """PyYAML raises ValueError (2026-02-30, an int of 5000 digits) or OverflowError out
        of its constructors, with no line: say which line instead."""
        try:
            return super().construct_object(node, deep=deep)
        except (ValueError, OverflowError) as exc:
            msg = (
                f"a value YAML cannot read (line {node.start_mark.line + 1}): a date that "
                "does not exist, or a number of more than 4300 digits?"
            )
            raise _YamlProblem(msg) from exc


def _construct_mapping(loader: _StrictLoader, node: yaml.MappingNode) -> dict[Any, Any]:
    keys: set[Any] = set()
    for key_node, _ in node.value:
        key = loader.construct_object(key_node)
        if key != "<<" and key in keys:
            msg = f"duplicate key (line {key_node.start_mark.line + 1})"
            raise _YamlProblem(msg)
        keys.add(key)
    return loader.construct_mapping(node)


_StrictLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


def _read_yaml(path: Path) -> Mapping[str, Any]:
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        msg = "cannot read the file"
        raise _YamlProblem(msg) from exc
    try:
        data = yaml.load(text, Loader=_StrictLoader)  # noqa: S506  # a SafeLoader subclass
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark
        msg = f"not valid YAML (line {mark.line + 1})" if mark else "not valid YAML"
        raise _YamlProblem(msg) from exc
    except yaml.YAMLError as exc:
        msg = "not valid YAML"
        raise _YamlProblem(msg) from exc
    except RecursionError as exc:  # PyYAML builds nested collections recursively
        msg = TOO_DEEP
        raise _YamlProblem(msg) from exc
    if not isinstance(data, Mapping):
        msg = "a contract file must hold one YAML mapping"
        raise _YamlProblem(msg)
    return data
