"""The audit report as Markdown, HTML or JSON, from the one dict ``broker.audit.run`` builds.

Markdown and HTML share one outline (``outline``: headings, paragraphs, tables), so both say
the same thing in the same order: the verdict and the findings first (violations before
warnings), then the sections. Durations are in words (``7 days``, ``forever``), ε budget
periods by their dates; the JSON keeps the raw numbers. HTML: ``broker.audit.render_html``.
The renderer shows what the report holds: a column whose field no row has (the public report
leaves counts out, ``broker.audit.audience``) is left out.
``generated_at`` is only ever appended after a rule, outside the body, so that two runs over
the same topics compare equal without it.
"""

from __future__ import annotations

import html
import json
from collections.abc import Callable, Iterator, Sequence
from datetime import timedelta
from typing import Any

from broker.audit.blocks import Block, Heading, Para, Table
from broker.audit.model import period_label
from contracts.durations import describe_duration, parse_duration

FORMATS = ("md", "json", "html")


def render(report: dict[str, Any], fmt: str, generated_at: str | None = None) -> str:
    """The report in ``fmt`` (md, json or html)."""
    if fmt == "json":
        body = dict(report)
        if generated_at is not None:
            body["generated_at"] = generated_at
        return json.dumps(body, indent=2, sort_keys=True, ensure_ascii=False) + "\n"
    blocks = list(outline(report))
    if fmt == "html":
        from broker.audit.render_html import html_page

        return html_page(blocks, f"Audit of {report['contract']['id']}", generated_at)
    return _markdown(blocks, generated_at)


def outline(report: dict[str, Any]) -> Iterator[Block]:
    """The report's sections, in reading order."""
    c, period = report["contract"], report["period"]
    yield Heading(
        1, f"Audit of contract {c['id']} (version {c['version']}): {report['audience']} report"
    )
    verdict = (
        "OK: no violation" if report["ok"] else f"VIOLATIONS: {report['summary']['violations']}"
    )
    yield Para(
        f"**{verdict}** ({report['summary']['warnings']} warning(s)). "
        f"{c['title']}: {c['provider']} → {c['beneficiary']}.",
        "ok" if report["ok"] else "fail",
    )
    yield Heading(2, "Findings")
    if report["findings"]:
        findings = sorted(report["findings"], key=lambda f: f["severity"] != "violation")
        yield Table(
            ("severity", "section", "code", "finding", "where"),
            [
                (f["severity"], f["section"], f["code"], f["message"], f.get("where", ""))
                for f in findings
            ],
            [f["severity"] for f in findings],
        )
    else:
        yield Para("None.")
    yield Heading(2, "About this report")
    yield Para(report["audience_note"])
    yield Para(
        f"Policy hash `{c['policy_hash']}` (headers carry `{c['policy_hash_short']}`). "
        f"Period: {period['since'] or 'beginning'} → {period['until'] or 'end'} "
        f"(raw events by {period['raw_events_by']}, rejections by "
        f"{period['rejected_by']}, windows by {period['windows_by']})."
    )
    yield from _reconciliation(report["reconciliation"])
    yield from _terms(report["terms"])
    yield from _canary(report["canary"])
    yield from _linked(report["linked"])
    yield Heading(2, "Offsets read")
    yield Table(
        ("topic", "partition: first..end"),
        [
            (
                t,
                "absent"
                if parts is None
                else ", ".join(f"{p}: {a}..{b}" for p, (a, b) in parts.items()),
            )
            for t, parts in report["read"].items()
        ],
    )


def _reconciliation(recon: dict[str, Any]) -> Iterator[Block]:
    yield Heading(2, "1. Reconciliation")
    yield Para(
        "Events in = raw events + rejected (DLQ) records. Per view, every raw event is "
        "published, suppressed, late, filtered, outside (no cell/zone), duplicate (an event "
        "id already counted for the same subject and window), bounded (beyond a subject's "
        "contribution bounds in a noised view) or open (window "
        "not released yet); gap = what does not add up, plus every disagreement with "
        "the worker's own accounting."
    )
    yield _table(
        (
            ("stream", _at("stream")),
            ("events in", _at("events_in")),
            ("raw", _at("raw_events")),
            ("rejected", _at("rejected")),
            ("undecodable", _at("undecodable")),
            ("rejected by reason", _at("rejected_by_reason", show=_reasons)),
        ),
        recon["streams"],
    )
    yield _table(
        (
            ("view", _at("view")),
            ("raw", _at("events_in")),
            *((name, _at(name)) for name in _DISPOSITIONS),
            ("gap", _at("gap")),
        ),
        recon["views"],
    )
    yield _table(
        (
            ("view", _at("view")),
            ("windows released", _at("windows", "released")),
            ("withheld", _at("windows", "withheld")),
            ("open", _at("windows", "open")),
            ("with worker accounting", _at("windows", "with_accounting")),
            ("accounting gap", _at("gap_detail", "worker_accounting")),
            ("checkpoint gap", _checkpoint_gap),
            ("worker checkpoint counts", _at("worker_checkpoint_counts", show=_counts)),
        ),
        recon["views"],
    )


_DISPOSITIONS = (
    "published",
    "suppressed",
    "late",
    "filtered",
    "outside",
    "duplicate",
    "bounded",
    "open",
)


class _Missing:
    """A cell whose field the report does not hold (the public report leaves counts out)."""


MISSING = _Missing()
Getter = Callable[[dict[str, Any]], Any]


def _at(*path: str, show: Callable[[Any], Any] | None = None) -> Getter:
    """The value at ``path`` in a row (shown with ``show``), or ``MISSING``."""

    def get(row: dict[str, Any]) -> Any:
        value: Any = row
        for key in path:
            if not isinstance(value, dict) or key not in value:
                return MISSING
            value = value[key]
        return value if show is None else show(value)

    return get


def _table(columns: Sequence[tuple[str, Getter]], rows: Sequence[dict[str, Any]]) -> Table:
    """A table of ``rows``; a column no row has a value for is left out."""
    cells = [[get(row) for _, get in columns] for row in rows]
    kept = [i for i in range(len(columns)) if not rows or any(c[i] is not MISSING for c in cells)]
    return Table(
        tuple(columns[i][0] for i in kept),
        [tuple("—" if c[i] is MISSING else c[i] for i in kept) for c in cells],
    )


def _checkpoint_gap(view: dict[str, Any]) -> Any:
    if not view["checkpoints_compared"]:
        return "not compared"
    return view["gap_detail"]["worker_checkpoints"]


def _reasons(by_reason: dict[str, int]) -> str:
    return ", ".join(f"{k} {v}" for k, v in by_reason.items()) or "—"


def _terms(terms: dict[str, Any]) -> Iterator[Block]:
    yield Heading(2, "2. Terms vs reality")
    yield Heading(3, "Published fields, k and ε")
    rows = []
    for v in terms["views"]:
        eps = v["epsilon"]
        spent = (
            "no noise"
            if not eps["noise"]
            else f"ε {eps['epsilon']:g}/window, budget {eps['budget']:g}, max spent "
            + f"{max((s['spent'] for s in eps['spent']), default=0):g}"
        )
        rows.append(
            (
                v["view"],
                v["records"],
                ", ".join(v["fields_found"]) or "—",
                ", ".join(v["fields_extra"]) or "none",
                v["k_contract"],
                ", ".join(str(k) for k in v["k_reported"]) or "—",
                v["groups_below_k"],
                spent,
            )
        )
    yield Table(
        (
            "view",
            "records",
            "fields found",
            "extra fields",
            "k (contract)",
            "k (reports)",
            "groups below k",
            "ε",
        ),
        rows,
    )
    yield from _epsilon_periods(terms["views"])
    yield Heading(3, "Topics")
    yield Table(
        ("topic", "config", "contract", "cluster", "ok"),
        [
            (
                t["topic"],
                t["config"],
                _config_value(t["config"], t["contract"]),
                _config_value(t["config"], t["cluster"]),
                "yes" if t["ok"] else "NO",
            )
            for t in terms["topics"]
        ],
        ["" if t["ok"] else "violation" for t in terms["topics"]],
    )
    keys = terms["keys"]
    yield Heading(3, "Pseudonym keys")
    yield Para(
        f"`{keys['topic']}`: rotation {_iso_words(keys['rotation'])}, retention "
        f"{_iso_words(keys['key_retention'])}; stored epochs: "
        f"{_epochs(keys['epochs_stored'])}; destroyed: "
        f"{_epochs(keys['epochs_destroyed'])}; destruction floor: "
        f"{_floor(keys)}; noise key: {'yes' if keys['noise_key'] else 'no'}."
    )
    acls = terms["acls"]
    yield Heading(3, "ACLs")
    if acls.get("error"):
        yield Para(f"The cluster's ACLs could not be listed ({acls['error']}).")
    elif not acls["enforced"]:
        yield Para("No authorizer: ACLs not enforced on this cluster.")
    else:
        yield Table(
            ("principal", "topic", "allowed"),
            [(g["principal"], g["topic"], ", ".join(g["operations"])) for g in acls["grants"]],
        )
        yield Table(
            ("principal", "worker consumer group", "allowed"),
            [(g["principal"], g["group"], ", ".join(g["operations"])) for g in acls["groups"]],
        )
    yield Heading(3, "Versions and policy hashes seen")
    yield Table(
        ("where", "contract version", "policy hash", "records"),
        [
            ("public", s["contract_version"], s["policy_hash"], s["records"])
            for s in terms["versions"]["public"]
        ]
        + [
            ("raw", s["contract_version"], "—", s.get("records", "—"))
            for s in terms["versions"]["raw"]
        ],
    )


def _canary(canary: dict[str, Any]) -> Iterator[Block]:
    yield Heading(2, "3. Canary scan")
    scanned = canary["scanned"]
    yield Para(
        f"{canary['identifiers']} raw identifiers (as sent, lower and upper case, canonical) "
        f"searched in {scanned['public_records']} public records (keys, values, "
        f"headers) and the headers of {scanned['dlq_records']} DLQ records: "
        f"**{canary['hits']} found**. {canary['identifiers_too_short']} identifier(s) "
        f"shorter than {canary['min_length']} characters not searched."
    )
    if canary["listed"]:
        yield _table(
            (("where", _at("where")), ("identifier (SHA-256 prefix)", _at("identifier"))),
            canary["listed"],
        )


def _linked(linked: dict[str, Any]) -> Iterator[Block]:
    yield Heading(2, "4. Linked views (secondary suppression)")
    if not linked["sets"]:
        yield Para("No views of this contract are released together: nothing to difference.")
        return
    yield Para(
        "Views whose totals add up are released together. For every window all of them "
        "released, an interval attacker takes every published number and every relation the "
        "raw events hold, and bounds by linear programming each withheld group and each union "
        "of withheld groups on one side of a relation. A target is pinned when its smallest "
        "and largest possible values are equal; pinned with fewer than k distinct subjects is "
        "a violation. Counts only, never a value."
    )
    yield _table(
        (
            ("views", _at("views", show=", ".join)),
            ("windows", _at("windows")),
            ("withheld groups", _at("withheld_groups")),
            ("targets", _at("targets")),
            ("pinned", _at("pinned")),
            ("pinned below k", _at("pinned_below_k")),
        ),
        [s for s in linked["sets"] if s.get("checked")],
    )


def _epsilon_periods(views: list[dict[str, Any]]) -> Iterator[Block]:
    """ε spent in each budget period of each noised view, the period named by its dates."""
    rows, marks = [], []
    for v in views:
        eps = v["epsilon"]
        if not eps.get("noise") or "spent" not in eps:
            continue
        for s in eps["spent"]:
            over = s["spent"] > eps["budget"] + 1e-9
            rows.append(
                (
                    v["view"],
                    period_label(s["period_start"], eps["period_ms"]),
                    f"{s['spent']:g}",
                    f"{eps['budget']:g}",
                    "OVER BUDGET" if over else f"{eps['budget'] - s['spent']:g} left",
                )
            )
            marks.append("violation" if over else "")
    if rows:
        yield Heading(3, "ε spent per budget period")
        yield Table(("view", "period (UTC)", "ε spent", "budget", ""), rows, marks)


def _config_value(config: str, value: Any) -> Any:
    """A topic config in words when it is a duration in ms (``retention.ms``: ``7 days``)."""
    if not config.endswith(".ms") or not isinstance(value, str):
        return value
    try:
        ms = int(value)
    except ValueError:
        return value
    if ms < 0:
        return "forever"
    return describe_duration(timedelta(milliseconds=ms)) if ms else "0"


def _floor(keys: dict[str, Any]) -> str:
    """``epoch 20605 (from 2026-06-01)``, or ``none``."""
    floor = keys["destruction_floor"]
    if not isinstance(floor, int):
        return "none"
    try:
        rotation_ms = int(parse_duration(keys["rotation"]).total_seconds() * 1000)
    except ValueError:
        return f"epoch {floor}"
    return f"epoch {floor} (from {period_label(floor * rotation_ms, 0).split(' → ')[0]})"


def _iso_words(value: Any) -> Any:
    """``P7D`` -> ``7 days``; anything else as it is."""
    try:
        return describe_duration(parse_duration(value))
    except ValueError:
        return value


def _counts(counts: dict[str, int] | None) -> str:
    return "—" if counts is None else ", ".join(f"{k} {v}" for k, v in counts.items())


def _epochs(epochs: list[dict[str, Any]]) -> str:
    if not epochs:
        return "none"
    return ", ".join(f"{e['epoch']} ({e['from'][:10]})" for e in epochs)


def _md(text: str) -> str:
    """Text for Markdown with HTML neutralised: strings from records (header values, versions)
    must never become markup in a viewer that renders inline HTML."""
    return html.escape(text, quote=False)


def _cell(value: Any) -> str:
    return _md(str(value)).replace("|", "\\|").replace("\n", " ").replace("\r", " ")


def _markdown(blocks: list[Block], generated_at: str | None) -> str:
    lines: list[str] = []
    for block in blocks:
        if isinstance(block, Heading):
            lines += ["#" * block.level + " " + _md(block.text).replace("\n", " "), ""]
        elif isinstance(block, Para):
            lines += [_md(block.text), ""]
        else:
            lines.append("| " + " | ".join(_cell(h) for h in block.header) + " |")
            lines.append("|" + "---|" * len(block.header))
            lines += ["| " + " | ".join(_cell(v) for v in row) + " |" for row in block.rows]
            lines.append("")
    if generated_at is not None:
        lines += ["---", "", f"generated_at: {generated_at}", ""]
    return "\n".join(lines)
