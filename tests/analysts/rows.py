"""Hand-built releases for the writer unit tests: contracts, groups and reports."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import h3

from broker.kafka.public_reader import PublishedGroup, ViewContents, WindowReport
from contracts import Contract, load_contracts
from contracts.copies import example_data, write_contract

NOW = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)
T0 = int(datetime(2026, 3, 1, 8, 0, tzinfo=UTC).timestamp() * 1000)
QUARTER = 15 * 60 * 1000
HEADERS = {"respublica.contract_version": "1", "respublica.policy_hash": "abcdef0123456789"}
MDS_REPORTS_SPEC_COLUMNS = [
    "provider_id",
    "start_date",
    "duration",
    "special_group_type",
    "geography_id",
    "vehicle_type",
    "trip_count",
    "rider_count",
]
"""MDS 2.0.2, data-types.md, "Reports" (the Report structure, in this order; the header row of
provider/examples.md is the same). Its "Data Redaction" section: "If the query returns fewer
than `10` trips in a count, then that row's count value is returned as "-1". Note "0" values
are also returned as "-1" since the goal is to group both low and no count values for
privacy." Written here from the spec, not imported from the code under test."""
MDS_REDACTED = "-1"
LYON = [(45.75, 4.85), (45.76, 4.83), (45.72, 4.80), (45.79, 4.90)]  # (lat, lon) in the bbox


def load_example(
    tmp_path: Path, name: str, edit: Callable[[dict[str, Any]], None] | None = None
) -> Contract:
    """An example contract (paths made absolute), optionally edited."""
    data = example_data(name)
    if edit is not None:
        edit(data)
    return load_contracts([write_contract(data, tmp_path, f"{name}.yaml")], now=NOW)[0]


def group(
    start: int,
    dims: dict[str, str | None],
    measures: dict[str, Any],
    window: int = QUARTER,
    offset: int = 0,
) -> PublishedGroup:
    return PublishedGroup(
        start, start + window, dims, measures, dict(HEADERS), "public.x.y", 0, offset
    )


def report(
    start: int,
    published: int,
    suppressed: int,
    k: int = 10,
    window: int = QUARTER,
    epsilon: float = 0.0,
) -> WindowReport:
    return WindowReport(
        start,
        start + window,
        k,
        published,
        suppressed,
        None,
        epsilon,
        dict(HEADERS),
        "public.x.y",
        0,
        99,
    )


def availability(contract: Contract) -> ViewContents:
    """Two windows of the micromobility availability view (one H3 dimension)."""
    cells = [h3.latlng_to_cell(lat, lon, 8) for lat, lon in LYON]
    groups = [
        group(T0, {"cell": cells[0]}, {"events": 14, "vehicles": 12}),
        group(T0, {"cell": cells[1]}, {"events": 11, "vehicles": 10}),
        group(T0 + QUARTER, {"cell": cells[2]}, {"events": 30, "vehicles": 21}),
    ]
    reports = [report(T0, 2, 3), report(T0 + QUARTER, 1, 0)]
    return ViewContents(contract, contract.view("availability"), groups, reports)
