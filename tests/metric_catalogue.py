"""The metric catalogue of ``docs/metrics.md`` as the liveness tests read it: which families
each process serves, and which of them a ``/metrics`` text has no sample of."""

from __future__ import annotations

import re
from pathlib import Path

DOC = Path(__file__).resolve().parents[1] / "docs" / "metrics.md"
PROCESSES = ("gateway", "validator", "connect", "worker")


def catalogue() -> dict[str, set[str]]:
    """Every catalogue family → the processes its last column ("served by") names (the
    worker's operational metrics, documented below the catalogue, are not in it)."""
    text = DOC.read_text().partition("## Operational metrics")[0]
    rows = re.findall(r"^\| `(respublica_[a-z_]+)` .*\| ([^|]+) \|$", text, re.M)
    return {name: {p.strip() for p in owners.split(",")} for name, owners in rows}


def served_by(process: str) -> set[str]:
    """The catalogue families ``process`` serves."""
    return {name for name, owners in catalogue().items() if process in owners}


def missing(text: str, names: set[str]) -> list[str]:
    """The metric families with no sample line in a ``/metrics`` text."""
    return sorted(n for n in names if not re.search(rf"^{n}(_bucket|_count)?[{{ ]", text, re.M))
