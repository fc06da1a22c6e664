"""The utility report: what each view publishes of some events, and nearby alternatives.

Pure (``policies.utility``) on simulator events, then ``respublica contracts utility`` on NDJSON
files read through the ingest validator (``connectors.events_file``).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from broker.cli import main
from policies.oracle import evaluate
from policies.pseudonymise import KeyRing
from policies.utility import AS_SIGNED, Outcome, utility, view_utility
from tests.analysts.rows import load_example
from tests.worker.support import mobility_events, rental_events


@pytest.fixture(scope="module")
def mobility() -> dict[str, list[dict[str, object]]]:
    return mobility_events(6000)


def _by_label(outcomes: tuple[Outcome, ...]) -> dict[str, Outcome]:
    return {o.label: o for o in outcomes}


def test_as_signed_is_what_the_oracle_releases(
    tmp_path: Path, mobility: dict[str, list[dict[str, object]]]
) -> None:
    contract = load_example(tmp_path, "micromobility")
    releases = evaluate(contract, mobility, keyring=KeyRing())["availability"]
    report = view_utility(contract, "availability", mobility["vehicle_events"], keyring=KeyRing())
    signed = report.outcomes[0]
    assert signed.label == AS_SIGNED
    assert signed.events_published == sum(r.report.events_published for r in releases)
    assert signed.groups_suppressed == sum(r.report.groups_suppressed for r in releases)
    assert signed.windows == len(releases)
    assert signed.events_in_view == signed.events_published + signed.events_suppressed
    assert 0 < signed.share_events_published() < 1  # type: ignore[operator]


def test_without_nearby_only_the_view_as_signed(
    tmp_path: Path, mobility: dict[str, list[dict[str, object]]]
) -> None:
    """What ``respublica demo`` prints: the same numbers as the full report's first row."""
    contract = load_example(tmp_path, "micromobility")
    full = utility(contract, mobility, keyring=KeyRing())
    short = utility(contract, mobility, keyring=KeyRing(), nearby=False)
    assert [r.view for r in short] == [r.view for r in full] == [v.name for v in contract.views]
    assert [r.outcomes for r in short] == [r.outcomes[:1] for r in full]
    assert all(len(r.outcomes) > 1 for r in full)


def test_alternatives_move_the_way_suppression_says(
    tmp_path: Path, mobility: dict[str, list[dict[str, object]]]
) -> None:
    contract = load_example(tmp_path, "micromobility")
    outcomes = _by_label(
        view_utility(
            contract, "availability", mobility["vehicle_events"], keyring=KeyRing()
        ).outcomes
    )
    signed = outcomes[AS_SIGNED]
    assert set(outcomes) == {
        AS_SIGNED,
        "H3 coarser (resolution 6)",
        "H3 finer (resolution 8)",
        "window PT30M",
        "window PT1H",
        "k=5 (weaker)",
        "k=20",
    }
    # A coarser cell, a longer window hold every subject of their parts; a larger k asks more.
    assert outcomes["H3 coarser (resolution 6)"].events_published >= signed.events_published
    assert outcomes["H3 finer (resolution 8)"].events_published <= signed.events_published
    assert outcomes["window PT1H"].events_published >= signed.events_published
    assert outcomes["k=20"].events_published <= signed.events_published
    assert outcomes["k=5 (weaker)"].weaker and not outcomes["k=20"].weaker
    assert all(o.events_in_view == signed.events_in_view for o in outcomes.values())


def test_an_alternative_the_contract_checks_refuse_says_why(tmp_path: Path) -> None:
    contract = load_example(tmp_path, "rentals")
    reports = utility(contract, rental_events(500), keyring=KeyRing())
    assert [r.view for r in reports] == [v.name for v in contract.views]
    refused = [o for r in reports for o in r.outcomes if o.refused]
    assert refused and all(o.label == "window P120D" for o in refused)
    assert "key_retention" in str(refused[0].refused)
    assert refused[0].to_dict()["share_events_published"] is None


def test_the_command_reads_ndjson_through_the_validator(
    tmp_path: Path,
    mobility: dict[str, list[dict[str, object]]],
    capsys: pytest.CaptureFixture[str],
) -> None:
    contract = load_example(tmp_path, "micromobility")
    assert contract.source is not None
    files = {}
    for stream, records in mobility.items():
        files[stream] = tmp_path / f"{stream}.ndjson"
        lines = [json.dumps(r) for r in records] + ['{"not": "an event"}', "[1, 2]", ""]
        files[stream].write_text("\n".join(lines) + "\n", encoding="utf-8")
    args = ["contracts", "utility", str(contract.source), "--format", "json"]
    args += [a for s, f in files.items() for a in ("--events", f"{s}={f}")]
    assert main(args) == 0
    body = json.loads(capsys.readouterr().out)
    streams = {s["stream"]: s for s in body["streams"]}
    assert streams["vehicle_events"]["accepted"] == len(mobility["vehicle_events"])
    assert streams["vehicle_events"]["rejected"] == {"MISSING_FIELD": 1, "NOT_AN_OBJECT": 1}
    expected = view_utility(
        contract, "availability", mobility["vehicle_events"], keyring=KeyRing()
    ).outcomes[0]
    signed = body["views"][0]["outcomes"][0]
    assert (signed["events_published"], signed["groups_published"]) == (
        expected.events_published,
        expected.groups_published,
    )
    # Text, and a clear error for a stream the contract lacks (nothing of the file is shown).
    assert (
        main(["contracts", "utility", str(contract.source), "--events", str(files["trips"])]) == 1
    )
    assert "say which stream" in capsys.readouterr().err
    bad = ["contracts", "utility", str(contract.source), "--events", f"nope={files['trips']}"]
    assert main(bad) == 1
    assert "has no stream 'nope'" in capsys.readouterr().err
    assert (
        main(["contracts", "utility", str(contract.source), "--events", f"trips={files['trips']}"])
        == 0
    )
    text = capsys.readouterr().out
    assert "view origin_destination" in text and "as signed" in text and "%" in text
