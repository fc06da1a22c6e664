"""``respublica bench`` end to end on a small input: every variant runs on the real broker, P's
releases are checked against the oracle, and F's output is checked and reported.

Only correctness is asserted here: speed is what the bench reports, never a test's verdict.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from broker.bench.harness import BenchOptions, render, run


@pytest.mark.timeout(600)
def test_bench_runs_every_variant_and_checks_outputs(kafka_bootstrap: str, tmp_path: Path) -> None:
    options = BenchOptions(
        events=4_000, partitions=2, rounds=1, variants=("b1", "b2", "p", "f"), workdir=tmp_path
    )
    summary = run(kafka_bootstrap, options)
    variants = summary["variants"]
    assert set(variants) == {"b1", "b2", "p", "f"}
    for name in ("b1", "b2"):
        assert variants[name]["events"] == 4_000 + 2  # and one end-of-stream mark per partition
    assert variants["p"]["oracle_equal"] is True  # run() raises rather than report a wrong P
    assert variants["p"]["windows"] > 0
    f = variants["f"]
    # F is checked, not required to be right: its sink was read and compared group by group.
    assert f["groups_expected"] > 0
    assert f["groups_matching"] > 0
    assert all(
        v["events_per_s_median"] > 0 and v["cpu_us_per_event"] > 0 for v in variants.values()
    )
    assert set(summary["ratios"]) == {"P/B1", "B2/B1", "P/B2", "P/F"}
    table = render(summary)
    assert "P vs the oracle: every release equal" in table
    assert "F vs the oracle" in table
