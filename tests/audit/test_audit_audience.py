"""The public audit report, from a hand-built confidential one: what it keeps and drops.

The real run is in ``test_audit_run.py`` (differencing against the public topic); here, the
findings that quote counts, the classification of every finding code, and the rendering.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from broker.audit.audience import AS_WRITTEN, REWORDED, for_audience
from broker.audit.read import AuditError
from broker.audit.render import FORMATS, render
from tests.audit.support import CONFIDENTIAL_KEYS, keys_in, sample_report

pytestmark = pytest.mark.unit

AUDIT = Path(__file__).resolve().parents[2] / "broker" / "audit"


def finding(code: str, message: str, severity: str = "violation") -> dict[str, Any]:
    return {"severity": severity, "section": "reconciliation", "code": code, "message": message}


COUNTING = [
    finding(
        "accounting-gap",
        "view availability: window 1767225600000: the worker accounted 41 published + 7 "
        "suppressed events, the raw topic gives 41 + 9 (gap 2)",
    ),
    finding(
        "checkpoint-gap",
        "view availability: the worker's checkpoints and the raw topic disagree (folded 8123 "
        "vs 8125, late 17 vs 15; gap 4)",
    ),
    finding(
        "open-windows",
        "view origin_destination: 733 event(s) in 2 window(s) not released yet",
        "warning",
    ),
    finding(
        "below-k",
        "view availability: window 1767225600000 publishes a group of 4 distinct subjects, "
        "below k=10",
    ),
    finding("identifier-leak", "raw identifier sha256:3f2a9c0d1e2b found in header x-debug"),
    finding("some-new-check", "view availability: window 1767225600000 holds 5 odd events"),
]
COUNTS = {"41", "7", "9", "2", "8123", "8125", "17", "15", "4", "733", "5"}


def test_findings_that_quote_counts_keep_what_and_where_but_not_how_many() -> None:
    report = sample_report(COUNTING)
    public = for_audience(report, "public")
    confidential = for_audience(report, "confidential")
    assert [f["message"] for f in confidential["findings"]] == [f["message"] for f in COUNTING]
    assert [f["code"] for f in public["findings"]] == [f["code"] for f in COUNTING]
    messages = [f["message"] for f in public["findings"]]
    for message in messages:
        assert not set(re.findall(r"\d+", message)) & COUNTS, message
        assert "sha256:" not in message
    assert messages[0].startswith("view availability: window 1767225600000: ")
    assert messages[1].startswith("view availability: ")
    assert messages[2].startswith("view origin_destination: ")
    assert messages[4] == "raw identifier found in header x-debug"
    assert "confidential report" in messages[5]


def test_every_finding_code_the_audit_emits_has_a_public_wording() -> None:
    emitted: set[str] = set()
    for path in AUDIT.glob("*.py"):
        source = path.read_text(encoding="utf-8")
        emitted |= set(re.findall(r"\.(?:violation|warning)\(\s*SECTION,\s*\"([a-z-]+)\"", source))
        emitted |= set(re.findall(r"_flag\(\s*\"([a-z-]+)\"", source))
    assert len(emitted) > 25, "the pattern no longer finds the codes"
    unclassified = emitted - AS_WRITTEN - set(REWORDED)
    assert not unclassified, (
        f"decide whether these findings may be quoted to the public: {sorted(unclassified)} "
        "(broker/audit/audience.py: AS_WRITTEN or REWORDED)"
    )


def test_the_public_report_holds_no_event_count_of_a_view_or_window() -> None:
    report = sample_report([])
    public = for_audience(report, "public")
    assert public["audience"] == "public"
    found = {key for _, key in keys_in(report)}
    assert CONFIDENTIAL_KEYS & found  # the confidential report holds them
    leaks = [(path, key) for path, key in keys_in(public) if key in CONFIDENTIAL_KEYS]
    assert leaks == []
    view = public["reconciliation"]["views"][0]
    assert view["gap"] == 3 and view["gap_detail"]["worker_accounting"] == 3
    assert public["reconciliation"]["streams"][0]["rejected_by_reason"] == {"MALFORMED_JSON": 40}
    assert list(public["read"]) == ["public.c-1.availability"]
    assert public["canary"]["listed"] == [{"where": "public.c-1.availability/0@3 header x"}]
    assert public["terms"]["versions"]["raw"] == [{"contract_version": "1"}]
    text = json.dumps(public)
    for number in ("25040", "25000", "947", "7227", "16826", "8174"):
        assert number not in text
        assert number in json.dumps(report)


def test_both_reports_render_in_every_format() -> None:
    report = sample_report(COUNTING)
    for audience in ("public", "confidential"):
        shaped = for_audience(report, audience)
        for fmt in FORMATS:
            text = render(shaped, fmt)
            assert f"{audience} report" in text or f'"audience": "{audience}"' in text
    public_md = render(for_audience(report, "public"), "md")
    assert "| stream | rejected | undecodable | rejected by reason |" in public_md
    assert "| view | gap |" in public_md
    assert "7227" not in public_md and "3f2a9c0d1e2b" not in public_md
    confidential_md = render(for_audience(report, "confidential"), "md")
    assert "| view | raw | published | suppressed |" in confidential_md
    assert "7227" in confidential_md


def test_an_unknown_audience_is_refused() -> None:
    with pytest.raises(AuditError, match="unknown audience"):
        for_audience(sample_report([]), "press")


@pytest.mark.parametrize("audience", ["public", "confidential"])
def test_strings_from_records_never_become_markup(audience: str) -> None:
    """A header value is the provider's or a forger's text: Markdown and HTML escape it."""
    hostile = '<img src=x onerror="alert(1)">|<script>x</script>'
    report = sample_report(COUNTING)
    report["terms"]["versions"]["raw"] = [{"contract_version": hostile, "records": 3}]
    report["findings"].append(finding("version-unknown", f"a record under version {hostile}"))
    shaped = for_audience(report, audience)
    for fmt in ("md", "html"):
        text = render(shaped, fmt)
        assert "<script>" not in text and "<img" not in text
    assert "&lt;script&gt;" in render(shaped, "md")
