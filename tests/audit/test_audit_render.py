"""The HTML report reads at a glance: styled inline, violations first and marked, durations
in words, ε periods by their dates."""

from __future__ import annotations

import re
from typing import Any

import pytest

from broker.audit.blocks import Table
from broker.audit.render import render
from broker.audit.render_html import html_page

pytestmark = pytest.mark.unit
DAY_MS = 86_400_000
JUNE_1 = 1_780_272_000_000  # 2026-06-01T00:00:00Z


def _report() -> dict[str, Any]:
    return {
        "ok": False,
        "audience": "public",
        "audience_note": "Public report.",
        "contract": {
            "id": "c",
            "version": 1,
            "title": "T",
            "provider": "p",
            "beneficiary": "b",
            "policy_hash": "h" * 64,
            "policy_hash_short": "h" * 16,
        },
        "period": {
            "since": None,
            "until": None,
            "raw_events_by": "event time",
            "rejected_by": "rejection time",
            "windows_by": "window start",
        },
        "summary": {"violations": 1, "warnings": 1},
        "findings": [
            {"severity": "warning", "section": "keys", "code": "w", "message": "look at this"},
            {"severity": "violation", "section": "terms", "code": "v", "message": "broken"},
        ],
        "reconciliation": {"streams": [], "views": []},
        "terms": {
            "views": [
                {
                    "view": "alerts",
                    "records": 4,
                    "fields_found": ["cell"],
                    "fields_extra": [],
                    "k_contract": 3,
                    "k_reported": [3],
                    "groups_below_k": 0,
                    "epsilon": {
                        "noise": True,
                        "epsilon": 1.0,
                        "epsilon_per_window": 2.0,
                        "budget": 192.0,
                        "period_ms": DAY_MS,
                        "spent": [
                            {"period_start": JUNE_1, "spent": 150.0},
                            {"period_start": JUNE_1 + DAY_MS, "spent": 200.0},
                        ],
                    },
                }
            ],
            "topics": [
                {
                    "topic": "raw.c.s",
                    "config": "retention.ms",
                    "contract": "604800000",
                    "cluster": "2592000000",
                    "ok": False,
                },
                {
                    "topic": "public.c.v",
                    "config": "retention.ms",
                    "contract": "-1",
                    "cluster": "-1",
                    "ok": True,
                },
                {
                    "topic": "respublica.c.partials.v",
                    "config": "min.compaction.lag.ms",
                    "contract": "300000",
                    "cluster": "300000",
                    "ok": True,
                },
            ],
            "keys": {
                "topic": "k",
                "rotation": "P1D",
                "key_retention": "P7D",
                "epochs_stored": [],
                "epochs_destroyed": [],
                "destruction_floor": None,
                "noise_key": False,
            },
            "acls": {"enforced": False, "grants": []},
            "versions": {"public": [], "raw": []},
        },
        "canary": {
            "identifiers": 0,
            "identifiers_too_short": 0,
            "min_length": 6,
            "scanned": {"public_records": 0, "dlq_records": 0},
            "hits": 0,
            "listed": [],
        },
        "linked": {"sets": []},
        "read": {},
    }


def _text(page: str) -> str:
    return re.sub(r"<[^>]+>", "", page)


def test_the_html_report_is_styled_inline_and_loads_nothing() -> None:
    page = render(_report(), "html")
    assert "<style>" in page and "</style>" in page
    assert not re.search(r"<link|<script|@import|url\(|https?://", page)


def test_violations_come_first_and_are_marked() -> None:
    page = render(_report(), "html")
    verdict = page.index("VIOLATIONS: 1")
    findings = page.index("broken")
    assert verdict < findings < page.index("look at this") < page.index("Public report.")
    assert re.search(r'<tr class="violation">(?:(?!</tr>).)*broken', page, re.DOTALL)
    assert re.search(r'<tr class="warning">(?:(?!</tr>).)*look at this', page, re.DOTALL)
    assert re.search(r'class="verdict fail"', page)
    # A topic config that differs from the contract is marked too.
    assert re.search(r'<tr class="violation">(?:(?!</tr>).)*raw\.c\.s', page, re.DOTALL)


def test_durations_are_in_words_not_milliseconds() -> None:
    for fmt in ("html", "md"):
        text = _text(render(_report(), fmt))
        assert "604800000" not in text and "2592000000" not in text
        assert "7 days" in text and "30 days" in text and "5 minutes" in text
        assert "forever" in text
        assert "rotation 1 day, retention 7 days" in text


def test_epsilon_periods_are_labelled_with_their_dates() -> None:
    page = render(_report(), "html")
    text = _text(page)
    assert "2026-06-01 → 2026-06-02" in text and "2026-06-02 → 2026-06-03" in text
    assert re.search(
        r'<tr class="violation">(?:(?!</tr>).)*2026-06-02 → 2026-06-03', page, re.DOTALL
    )


def test_table_cells_are_escaped_once() -> None:
    # The Markdown escaping (render._cell) is for Markdown only: HTML escapes each cell once.
    page = html_page([Table(("a<b",), [("x<y & z|w",)])], "t", None)
    assert "<th>a&lt;b</th>" in page and "<td>x&lt;y &amp; z|w</td>" in page
    assert "&amp;lt;" not in page and "&amp;amp;" not in page
