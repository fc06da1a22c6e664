"""The fenced code blocks of a markdown page, what the docs test does with each, and how a
console block's shown output is compared with what the commands print.

Command blocks (``bash``, ``sh``, ``shell``, ``console``) and ``python`` blocks are run (on
the pages of ``RUN_PAGES``); every other info string in ``SAMPLES`` (or none) is an output or
config sample. A runnable block may be preceded by one marker, an HTML comment on the line
right before its fence (a blank line between is allowed):

* ``<!-- docs-test: skip — REASON -->``: not run (the reason is required);
* ``<!-- docs-test: background URL — REASON -->``: a long-running service, started in the
  background until ``URL`` answers, then stopped;
* ``<!-- docs-test: output-varies — REASON -->``: run, but the output shown is not compared.

``console`` blocks are ``$ command`` lines (continued by a trailing ``\\`` or a heredoc) and
the output each is expected to print; ``...`` in a shown word or JSON string stands for any
text (an id, a token).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

COMMANDS = frozenset({"bash", "sh", "shell", "console"})
RUNNABLE = COMMANDS | {"python"}
SAMPLES = frozenset(
    {"", "text", "json", "yaml", "ndjson", "toml", "ini", "promql", "markdown", "properties"}
)
RUN_PAGES = (
    "README.md",
    "docs/operators.md",
    "docs/analysts.md",
    "docs/security.md",
    "docs/audit.md",
    "docs/web.md",
    "docs/contracts.md",
)
"""The pages the docs test runs; a runnable block anywhere else needs a skip marker."""
KINDS = frozenset({"skip", "background", "output-varies"})

_FENCE = re.compile(r"^(?P<indent> {0,3})(?P<fence>`{3,}|~{3,})\s*(?P<info>[^`]*)$")
_MARKER = re.compile(
    r"^<!--\s*docs-test:\s*(?P<kind>[\w-]+)(?:\s+(?P<arg>[^\s—]+))?\s*(?:(?:—|--)\s*(?P<reason>.*?))?\s*-->$"
)
_HEREDOC = re.compile(r"<<-?\s*(['\"]?)(?P<word>\w+)\1")
FIXED_EPOCH_MS = re.compile(r"(?<![\w.-])1[5-9]\d{11}(?![\w.])")
"""A literal time in milliseconds (2017-2033): pasted later, a gateway answers TOO_LATE."""


class DocsError(Exception):
    """A markdown page the docs test cannot accept as it is."""


@dataclass(frozen=True)
class Marker:
    kind: str
    arg: str | None
    reason: str


@dataclass(frozen=True)
class Block:
    """One fenced block: where it starts (the fence's line, from 1), its info string, body."""

    path: str
    line: int
    info: str
    body: str
    marker: Marker | None = None

    @property
    def where(self) -> str:
        return f"{self.path}:{self.line}"

    @property
    def is_command(self) -> bool:
        return self.info in COMMANDS

    @property
    def runs(self) -> bool:
        """A command or Python block: run by the docs test unless marked ``skip``."""
        return self.info in RUNNABLE

    @property
    def skipped(self) -> bool:
        return self.marker is not None and self.marker.kind == "skip"


@dataclass(frozen=True)
class Step:
    """A console command and the output the page shows after it."""

    command: str
    expected: list[str] = field(default_factory=list)


def parse(text: str, path: str = "<text>") -> list[Block]:
    """Every fenced block of ``text``, with the marker that precedes it, if any."""
    lines = text.splitlines()
    blocks: list[Block] = []
    index = 0
    while index < len(lines):
        opening = _FENCE.match(lines[index])
        if opening is None:
            index += 1
            continue
        fence = opening["fence"]
        info = opening["info"].strip().split(" ", 1)[0].lower()
        end = index + 1
        while end < len(lines) and not _closes(lines[end], fence):
            end += 1
        indent = len(opening["indent"])
        body = "\n".join(_dedent(line, indent) for line in lines[index + 1 : end]) + "\n"
        marker = _marker_before(lines, index, path)
        blocks.append(Block(path, index + 1, info, body, marker))
        index = end + 1
    return blocks


def _dedent(line: str, indent: int) -> str:
    """A fenced line without up to ``indent`` leading spaces (the fence's own, CommonMark)."""
    return line[min(indent, len(line) - len(line.lstrip(" "))) :]


def _closes(line: str, fence: str) -> bool:
    stripped = line.strip()
    return stripped.startswith(fence[0] * len(fence)) and set(stripped) == {fence[0]}


def _marker_before(lines: list[str], index: int, path: str) -> Marker | None:
    before = index - 1
    while before >= 0 and not lines[before].strip():
        before -= 1
    if before < 0 or "docs-test" not in lines[before]:
        return None
    found = _MARKER.match(lines[before].strip())
    if found is None:
        msg = f"{path}:{before + 1}: unreadable docs-test marker (`docs-test: KIND [ARG] — REASON`)"
        raise DocsError(msg)
    return Marker(found["kind"], found["arg"], (found["reason"] or "").strip())


def problems(blocks: list[Block]) -> list[str]:
    """What makes a page untestable: unknown info strings, bad markers, fixed times."""
    found = []
    for block in blocks:
        if block.info not in RUNNABLE | SAMPLES:
            found.append(
                f"{block.where}: unknown info string {block.info!r}: use one of "
                f"{sorted(RUNNABLE)} for what runs or {sorted(SAMPLES - {''})} for samples"
            )
        marker = block.marker
        if marker is None:
            continue
        if not block.runs:
            found.append(
                f"{block.where}: a docs-test marker on a sample ({block.info or 'no info'})"
            )
        elif marker.kind not in KINDS:
            found.append(f"{block.where}: unknown docs-test marker {marker.kind!r}")
        elif not marker.reason:
            found.append(f"{block.where}: docs-test {marker.kind} needs a reason (`— why`)")
        elif marker.kind == "background" and not (marker.arg or "").startswith("http"):
            found.append(f"{block.where}: docs-test background needs the URL to wait for")
    for block in blocks:
        if block.runs and not block.skipped and FIXED_EPOCH_MS.search(block.body):
            found.append(
                f"{block.where}: a fixed time in ms; compute it: NOW=$(($(date +%s) * 1000))"
            )
    return sorted(set(found))


def unrun(blocks: list[Block], ran: set[str]) -> list[str]:
    """The runnable blocks that were neither run (by ``where``) nor marked ``skip``.

    On a page the docs test does not run, ``ran`` is empty: every runnable block needs a
    ``skip`` marker whose reason says where its behaviour is tested.
    """
    return [
        f"{block.where}: a {block.info} block the docs test did not run; make it runnable, "
        "or mark it `<!-- docs-test: skip — why (and where it is tested) -->`"
        for block in blocks
        if block.runs and block.where not in ran and not block.skipped
    ]


def console_steps(body: str) -> list[Step]:
    """A ``console`` block as ``$`` commands (with their continuation lines) and outputs."""
    steps: list[Step] = []
    lines = body.splitlines()
    index = 0
    while index < len(lines):
        line = lines[index]
        if not line.startswith("$ "):
            if steps:
                steps[-1].expected.append(line)
            elif line.strip():
                msg = f"output before the first `$ ` command: {line!r}"
                raise DocsError(msg)
            index += 1
            continue
        command = [line[2:]]
        index += 1
        terminators = [m["word"] for m in _HEREDOC.finditer(line)]
        while index < len(lines) and (command[-1].endswith("\\") or terminators):
            current = lines[index]
            command.append(current)
            if terminators and current.strip() == terminators[0]:
                terminators.pop(0)
            else:
                terminators += [m["word"] for m in _HEREDOC.finditer(current)]
            index += 1
        steps.append(Step("\n".join(command)))
    return steps


def matches(expected: list[str], actual: str) -> str | None:
    """``None`` when ``actual`` prints what ``expected`` shows, else what differs."""
    shown = [line for line in expected if line.strip()]
    if not shown:
        return None
    printed = [line for line in actual.splitlines() if line.strip()]
    if len(printed) != len(shown):
        return f"{len(printed)} line(s) printed, {len(shown)} shown:\n{actual.strip()}"
    for want, got in zip(shown, printed, strict=True):
        if not _line_matches(want.strip(), got.strip()):
            return f"shown: {want.strip()}\nprinted: {got.strip()}"
    return None


def _line_matches(want: str, got: str) -> bool:
    if want.startswith(("{", "[")):
        try:
            return _json_matches(json.loads(want), json.loads(got))
        except ValueError:
            return False
    words, printed = want.split(), got.split()
    return len(words) == len(printed) and all(
        "..." in w or w == p for w, p in zip(words, printed, strict=True)
    )


def _json_matches(want: Any, got: Any) -> bool:
    if isinstance(want, str) and "..." in want:
        return isinstance(got, str)
    if isinstance(want, dict):
        return (
            isinstance(got, dict)
            and set(want) == set(got)
            and all(_json_matches(want[k], got[k]) for k in want)
        )
    if isinstance(want, list):
        return (
            isinstance(got, list)
            and len(want) == len(got)
            and all(_json_matches(w, g) for w, g in zip(want, got, strict=True))
        )
    return bool(want == got) and type(want) is type(got)


def read(path: Path, root: Path) -> list[Block]:
    """The blocks of ``path``, named relative to ``root``."""
    return parse(path.read_text(encoding="utf-8"), str(path.relative_to(root)))
