"""Hand-built releases for the writer unit tests: contracts, groups and reports."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import h3
import yaml

from broker.public_reader import PublishedGroup, ViewContents, WindowReport
from contracts import Contract, examples_dir, load_contracts

NOW = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)
T0 = int(datetime(2026, 3, 1, 8, 0, tzinfo=UTC).timestamp() * 1000)
QUARTER = 15 * 60 * 1000
HEADERS = {"respublica.contract_version": "1", "respublica.policy_hash": "abcdef0123456789"}
LYON = [(45.75, 4.85), (45.76, 4.83), (45.72, 4.80), (45.79, 4.90)]  # (lat, lon) in the bbox


def load_example(tmp_path: Path, name: str,
                 edit: Callable[[dict[str, Any]], None] | None = None) -> Contract:
    """An example contract (paths made absolute), optionally edited."""
    source = examples_dir() / f"{name}.yaml"
    data = yaml.safe_load(source.read_text(encoding="utf-8"))
    for stream in data["streams"]:
        stream["schema"] = str((source.parent / stream["schema"]).resolve())
    for view in data.get("views", []):
        for dim in view.get("group_by", []):
            if "file" in dim:
                dim["file"] = str((source.parent / dim["file"]).resolve())
    if edit is not None:
        edit(data)
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False, allow_unicode=True))
    return load_contracts([path], now=NOW)[0]


def group(start: int, dims: dict[str, str | None], measures: dict[str, Any],
          window: int = QUARTER, offset: int = 0) -> PublishedGroup:
    return PublishedGroup(start, start + window, dims, measures, dict(HEADERS),
                          "public.x.y", 0, offset)


def report(start: int, published: int, suppressed: int, k: int = 10,
           window: int = QUARTER, epsilon: float = 0.0) -> WindowReport:
    return WindowReport(start, start + window, k, published, suppressed, None, epsilon,
                        dict(HEADERS), "public.x.y", 0, 99)


def availability(contract: Contract) -> ViewContents:
    """Two windows of the micromobility availability view (one H3 dimension)."""
    cells = [h3.latlng_to_cell(lat, lon, 8) for lat, lon in LYON]
    groups = [group(T0, {"cell": cells[0]}, {"events": 14, "vehicles": 12}),
              group(T0, {"cell": cells[1]}, {"events": 11, "vehicles": 10}),
              group(T0 + QUARTER, {"cell": cells[2]}, {"events": 30, "vehicles": 21})]
    reports = [report(T0, 2, 3), report(T0 + QUARTER, 1, 0)]
    return ViewContents(contract, contract.view("availability"), groups, reports)
