"""Who reads an audit report: citizen watchdogs (``public``) or the DPO (``confidential``).

``broker.audit.run`` computes one report, the confidential one: every count the auditor has.
``for_audience`` returns what a given audience may read. The public report is built by
picking what is safe (an allow-list: a field added to the confidential report stays out of
the public one until someone decides otherwise), so that nothing in it, together with the
public topics, gives the size of a suppressed group:

* no event count that covers suppressed events: raw events and events in per stream, and per
  view published / suppressed / late / filtered / outside / duplicate / bounded / open. ``raw −
  Σ published counts`` is the suppressed total of a view without filter (origin_destination),
  and a period of one window makes it one window's, i.e. one group's size when one group was
  suppressed; ``open`` becomes a window's suppressed count as soon as that window is published;
* no per-window accounting, no worker checkpoint counts, no raw records per contract version,
  no offsets of internal topics (``end − start`` of the raw topic is its record count);
* no count of windows without any event (``empty_windows``): a noised view's public reports do
  not tell an empty window from one whose groups were all withheld;
* no identifier fingerprint (a SHA-256 prefix of a short vehicle id is easily inverted);
* finding messages that quote such counts are reworded (the code, view, window and ``where``
  stay; the counts are in the confidential report).

What stays: rejected records by reason (never part of a view), undecodable and control
records, every view's **gap** and where it comes from, windows released / withheld / open,
all of "terms vs reality" (computed from public topics, configs, keys and ACLs), the canary
scan's counts and the places of its hits, the linked-views attack (windows, withheld groups
and targets checked, how many pinned: withheld groups are counted by the public reports
already), the offsets read on the public topics, every finding.
Reasoning and limits: docs/audit.md, "Two audiences".
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from broker.audit.read import AuditError

PUBLIC = "public"
CONFIDENTIAL = "confidential"
AUDIENCES = (PUBLIC, CONFIDENTIAL)

NOTES = {
    PUBLIC: (
        "Public report. Withheld for the DPO's confidential report: event counts per stream "
        "and per view, per-window accounting, worker checkpoint counts, raw records per "
        "version, offsets of internal topics and identifier fingerprints; with the public "
        "topics they would give the size of suppressed groups. The gap, every finding and "
        "every check of the terms are here."
    ),
    CONFIDENTIAL: (
        "Confidential report, for the DPO: it holds counts that, differenced against the "
        "public topics, give the size of suppressed groups. Do not publish it; publish the "
        "public report (`--audience public`)."
    ),
}

STREAM_FIELDS = (
    "stream",
    "rejected",
    "rejected_by_reason",
    "undecodable",
    "control_records",
    "raw_topic_trimmed",
)
VIEW_FIELDS = ("view", "stream", "gap", "gap_detail", "windows", "checkpoints_compared")
TERMS_FIELDS = ("views", "topics", "keys", "acls")
CANARY_FIELDS = ("identifiers", "identifiers_too_short", "min_length", "scanned", "hits")

# Findings whose message holds no count of events or subjects, nor an identifier fingerprint.
# Group counts (report-mismatch, over-suppressed) are public already: every window's report
# states groups published and suppressed.
AS_WRITTEN = frozenset(
    {
        "acl-extra-reader",
        "acl-group-grant",
        "acl-ingest-grant",
        "acl-internal-grant",
        "acl-internal-reader",
        "acl-missing",
        "acl-public-writer",
        "acl-wildcard",
        "acl-worker-group",
        "acl-worker-group-missing",
        "attacker-inconsistent",
        "attacker-unavailable",
        "acls-not-enforced",
        "acls-unreadable",
        "bad-key",
        "bad-value",
        "budget-exceeded",
        "dlq-without-reason",
        "epsilon-mismatch",
        "epsilon-without-noise",
        "extra-field",
        "extra-header",
        "foreign-record",
        "gap",
        "group-without-events",
        "k-mismatch",
        "key-not-destroyed",
        "key-past-retention",
        "linked-unprotected",
        "measure-mismatch",
        "no-accounting",
        "other-version",
        "over-suppressed",
        "partitions",
        "pinned-below-k",
        "policy-hash-mismatch",
        "report-missing",
        "report-mismatch",
        "topic-config",
        "topic-missing",
        "unknown-schema",
        "window-skipped",
    }
)
_WHERE = re.compile(r"^view [^:\s]+(?:: window -?\d+)?")
_FINGERPRINT = re.compile(r"\s*sha256:[0-9a-f]+")


def _subject(message: str) -> str:
    """``view v: window w`` (or ``view v``) at the head of a message, else empty."""
    found = _WHERE.match(message)
    return f"{found.group(0)}: " if found else ""


# Findings whose message quotes counts: the public wording keeps what and where, not how many.
REWORDED: dict[str, Callable[[str], str]] = {
    "accounting-gap": lambda m: (
        f"{_subject(m)}the worker's accounting of published and suppressed events disagrees "
        "with the raw topic (counts in the confidential report)"
    ),
    "checkpoint-gap": lambda m: (
        f"{_subject(m)}the worker's checkpoints and the raw topic disagree (the gap is in "
        "the reconciliation table; counts in the confidential report)"
    ),
    "open-windows": lambda m: (
        f"{_subject(m)}window(s) not released yet (their events are counted in the "
        "confidential report)"
    ),
    "below-k": lambda m: f"{_subject(m)}a published group has fewer than k distinct subjects",
    # Saying why (no event) would tell an empty window from a fully suppressed one (noise).
    "report-not-due": lambda m: (
        f"{_subject(m)}a window is reported that the raw topic does not make due (details in "
        "the confidential report)"
    ),
    "identifier-leak": lambda m: _FINGERPRINT.sub("", m),
}


def for_audience(report: Mapping[str, Any], audience: str) -> dict[str, Any]:
    """The report as ``audience`` may read it (``report``: the confidential one)."""
    if audience == CONFIDENTIAL:
        return {**report, "audience": CONFIDENTIAL, "audience_note": NOTES[CONFIDENTIAL]}
    if audience == PUBLIC:
        return public_report(report)
    msg = f"unknown audience {audience!r}; use one of {', '.join(AUDIENCES)}"
    raise AuditError(msg)


def public_report(report: Mapping[str, Any]) -> dict[str, Any]:
    """What citizen watchdogs may read: no count a suppressed group's size follows from."""
    recon, terms, canary = report["reconciliation"], report["terms"], report["canary"]
    public_topics = f"public.{report['contract']['id']}."
    return {
        **_pick(report, ("format", "ok", "contract", "period", "summary")),
        "audience": PUBLIC,
        "audience_note": NOTES[PUBLIC],
        "findings": [public_finding(f) for f in report["findings"]],
        "reconciliation": {
            "streams": [_pick(s, STREAM_FIELDS) for s in recon["streams"]],
            "views": [_pick(v, VIEW_FIELDS) for v in recon["views"]],
        },
        "terms": {
            **_pick(terms, TERMS_FIELDS),
            "versions": {
                "public": terms["versions"]["public"],
                "raw": [
                    {"contract_version": v["contract_version"]} for v in terms["versions"]["raw"]
                ],
            },
        },
        "canary": {
            **_pick(canary, CANARY_FIELDS),
            "listed": [{"where": hit["where"]} for hit in canary["listed"]],
        },
        "linked": report["linked"],
        "read": {t: parts for t, parts in report["read"].items() if t.startswith(public_topics)},
    }


def public_finding(finding: Mapping[str, Any]) -> dict[str, Any]:
    """A finding as the public reads it; a code nobody classified yet keeps no message."""
    code, message = finding["code"], finding["message"]
    if code in AS_WRITTEN:
        return dict(finding)
    reword = REWORDED.get(code)
    text = (
        reword(message)
        if reword is not None
        else f"{_subject(message)}{code} (details in the confidential report)"
    )
    return {**finding, "message": text}


def _pick(data: Mapping[str, Any], fields: Iterable[str]) -> dict[str, Any]:
    return {name: data[name] for name in fields if name in data}
