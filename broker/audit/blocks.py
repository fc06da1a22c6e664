"""The outline both audit renderers share: headings, paragraphs, tables (``broker.audit.render``
builds it; Markdown there and HTML in ``broker.audit.render_html`` draw it)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Heading:
    level: int
    text: str


@dataclass(frozen=True)
class Para:
    text: str
    mark: str = ""  # "ok" or "fail" for the verdict: the HTML page shows it as a banner


@dataclass(frozen=True)
class Table:
    header: Sequence[str]
    rows: Sequence[Sequence[Any]]
    marks: Sequence[str] = ()  # per row: "violation", "warning" or "" (highlighted in HTML)


Block = Heading | Para | Table
