"""A hostile contract file is a listed problem, never a crash, and never a terminal escape.

Before: YAML nested ~500 deep raised RecursionError (only YAMLError was caught); a
5000-digit integer or a date like 2026-02-30 raised ValueError out of PyYAML;
``window: P99999999999D`` raised OverflowError out of ``timedelta``; ``k: 2**63`` loaded,
and fastavro raised OverflowError when the first report was encoded; ``epsilon: .inf`` or
``1e308`` crashed the budget check; and an unknown key was echoed raw in the problem's path,
ESC sequences included.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
import yaml

from broker.kafka.publish import report_schema
from broker.kafka.serde import Schemas, encode
from contracts import ContractError, load_contracts
from contracts.model import MAX_K

pytestmark = pytest.mark.unit

ExampleFactory = Callable[[str], dict[str, Any]]
ContractWriter = Callable[..., Path]


def problems_of(path: Path, now: datetime) -> list[str]:
    """Every problem of the file as text; fails the test on anything but a ContractError."""
    with pytest.raises(ContractError) as raised:
        load_contracts([path], now=now)
    return [str(p) for p in raised.value.problems]


def text_of(example_factory: ExampleFactory, write_contract: ContractWriter) -> str:
    return write_contract(example_factory("micromobility")).read_text(encoding="utf-8")


@pytest.mark.parametrize(
    ("extra", "says"),
    [
        ("extra: " + "[" * 500 + "]" * 500, "nested deeper than 64 levels"),
        ("extra: " + "[" * 100 + "]" * 100, "nested deeper than 64 levels"),
        (
            "extra:\n" + "".join("  " * i + f"a{i}:\n" for i in range(300)) + "  " * 300 + "x: 1",
            "nested deeper than 64 levels",
        ),
        ("extra: " + "1" * 5000, "a value YAML cannot read (line "),
        ("extra: 2026-02-30", "a value YAML cannot read (line "),
    ],
    ids=["500 lists deep", "100 lists deep", "300 mappings deep", "5000 digits", "2026-02-30"],
)
def test_a_file_yaml_cannot_build_is_a_problem(
    example_factory: ExampleFactory,
    write_contract: ContractWriter,
    now: datetime,
    extra: str,
    says: str,
) -> None:
    text = text_of(example_factory, write_contract) + extra + "\n"
    [problem] = problems_of(write_contract(text, "hostile.yaml"), now)
    assert says in problem


def test_aliases_that_expand_without_end_are_a_problem_found_fast(
    example_factory: ExampleFactory, write_contract: ContractWriter, now: datetime
) -> None:
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    lines += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 10)}]" for i in range(1, 9)]
    text = text_of(example_factory, write_contract) + "\n".join(lines) + "\n"  # 10**9 values
    started = time.monotonic()
    [problem] = problems_of(write_contract(text, "laughs.yaml"), now)
    assert "more than 1000000 values" in problem
    assert time.monotonic() - started < 10


@pytest.mark.parametrize(
    ("where", "value", "path", "says"),
    [
        (("views", 0, "window"), "P99999999999D", "views[0].window", "at most 999999999 days"),
        (
            ("views", 0, "time_bucket"),
            "PT" + "9" * 400 + "S",
            "views[0].time_bucket",
            "at most 32 characters",
        ),
        (
            ("streams", 0, "retention"),
            "P" + "9" * 4000 + "D",
            "streams[0].retention",
            "at most 32 characters",
        ),
        (("views", 0, "k"), 2**63, "views[0].k", f"must be at most {MAX_K}"),
        (("views", 0, "k"), 10**400, "views[0].k", f"must be at most {MAX_K}"),
        (("version",), 2**31, "version", "must be at most 2147483647"),
        (
            ("views", 0, "noise"),
            {"epsilon": float("inf"), "budget": 1e9, "period": "P1D"},
            "views[0].noise.epsilon",
            "must be a finite number",
        ),
        (
            ("views", 0, "noise"),
            {"epsilon": 1e308, "budget": 1e308, "period": "P1D"},
            "views[0].noise.epsilon",
            "must be at most 1000000",
        ),
        (
            ("views", 0, "noise"),
            {"epsilon": 1, "budget": float("nan"), "period": "P1D"},
            "views[0].noise.budget",
            "must be a finite number",
        ),
        (
            ("views", 0, "noise"),
            {"epsilon": 1, "budget": 9, "period": "P1D", "max_groups": 2**63},
            "views[0].noise.max_groups",
            "must be at most 1000000",
        ),
        (
            ("territory",),
            {"bbox": [float("nan"), 45.7, 4.9, 45.8]},
            "territory.bbox[0]",
            "must be a finite number",
        ),
    ],
    ids=[
        "window P99999999999D",
        "bucket of 400 digits",
        "retention of 4000 digits",
        "k 2**63",
        "k 10**400",
        "version 2**31",
        "epsilon inf",
        "epsilon 1e308",
        "budget nan",
        "max_groups 2**63",
        "bbox nan",
    ],
)
def test_a_number_out_of_bounds_is_a_problem_at_its_path(
    example_factory: ExampleFactory,
    write_contract: ContractWriter,
    now: datetime,
    where: tuple[Any, ...],
    value: Any,
    path: str,
    says: str,
) -> None:
    data = example_factory("micromobility")
    *parents, last = where
    target = data
    for part in parents:
        target = target[part]
    target[last] = value
    found = problems_of(write_contract(data), now)
    assert [p for p in found if f":{path}: " in p and says in p], found


def test_the_largest_k_allowed_encodes_in_a_report(
    example_factory: ExampleFactory, write_contract: ContractWriter, now: datetime
) -> None:
    data = example_factory("micromobility")
    data["views"][0]["k"] = MAX_K
    [contract] = load_contracts([write_contract(data)], now=now)
    view = contract.views[0]
    schema = Schemas().register(report_schema(contract, view), "s")
    report = {
        "window_start": 0,
        "window_end": 1,
        "k": view.k,
        "groups_published": 0,
        "groups_suppressed": 0,
        "withheld_reason": None,
        "epsilon": 0.0,
    }
    assert encode(schema.parsed, schema.schema_id, report)


@pytest.mark.parametrize(
    "key",
    ["\x1b[31mEVIL", "\x1b]0;title\x07", "a\u202eb", "x" * 65, "has space", "ünïcode"],
    ids=["ESC colour", "OSC title", "BiDi override", "too long", "space", "non-ASCII"],
)
def test_an_unknown_key_that_is_not_a_plain_name_shows_as_a_question_mark(
    example_factory: ExampleFactory,
    write_contract: ContractWriter,
    now: datetime,
    key: str,
) -> None:
    data = example_factory("micromobility")
    data[key] = 1
    data["views"][0][key] = 1
    text = yaml.safe_dump(data, allow_unicode=True)
    found = problems_of(write_contract(text, "keys.yaml"), now)
    joined = "\n".join(found)
    assert ":?: unknown key" in joined and ":views[0].?: unknown key" in joined
    assert key not in joined
    assert all(p.isprintable() for p in found)  # no control or format character (ESC, BiDi)


def test_a_misspelt_key_is_still_named(
    example_factory: ExampleFactory, write_contract: ContractWriter, now: datetime
) -> None:
    data = example_factory("micromobility")
    data["streams"][0]["allowed-lateness"] = data["streams"][0].pop("allowed_lateness")
    found = problems_of(write_contract(data), now)
    assert any(":streams[0].allowed-lateness: unknown key (did you mean" in p for p in found)


def test_no_control_character_of_a_file_reaches_any_message(
    example_factory: ExampleFactory, write_contract: ContractWriter, now: datetime
) -> None:
    data = example_factory("micromobility")
    data["streams"][0]["schema"] = "missing\x1b[2J.avsc"  # echoed as the path it tried
    found = problems_of(write_contract(data), now)
    assert any("file not found" in p for p in found)
    assert all(p.isprintable() for p in found)


_DEEP_UNION = '{"type": "record", "name": "r", "fields": [{"name": "a", "type": %s}]}' % (
    "[" * 900 + '"int"' + "]" * 900
)


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("[" * 100_000 + "]" * 100_000, "nested deeper than 64 levels"),
        (_DEEP_UNION, "nested deeper than 64 levels"),
        ('{"type": "record", "pad": "' + "x" * (17 * 2**20) + '"}', "larger than 16 MiB"),
    ],
    ids=["100000 lists deep", "900-deep union", "17 MiB"],
)
def test_a_referenced_file_json_cannot_hold_is_a_problem_at_its_reference(
    example_factory: ExampleFactory,
    write_contract: ContractWriter,
    now: datetime,
    tmp_path: Path,
    text: str,
    says: str,
) -> None:
    """Before: a schema file of 100,000 nested lists raised RecursionError out of
    ``json.loads``, a 900-deep union out of the flat-record check, and any size was read."""
    data = example_factory("micromobility")
    (tmp_path / "hostile.avsc").write_text(text, encoding="utf-8")
    data["streams"][0]["schema"] = "hostile.avsc"
    problems = problems_of(write_contract(data), now)
    assert any(":streams[0].schema: " in p and says in p for p in problems), problems
