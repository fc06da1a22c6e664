"""``respublica audit``: the auditor's report of one contract, computed from the topics.

Start here. ``audit(contract, kafka, period, audience=...)`` reads the contract's topics (raw,
DLQ, partials, state, keys, public) to their current end with broker privileges and returns the
report as a JSON-compatible dict; ``broker.audit.render`` turns it into Markdown or HTML. The
report is computed once, in full (the DPO's ``confidential`` one); ``broker.audit.audience``
keeps what the ``public`` one (the default, for citizen watchdogs) may hold.

Sections, each in its own module:

1. reconciliation (``replay`` + ``reconcile``): events in = raw + DLQ; per view published +
   suppressed + late + filtered + outside + duplicate + bounded + open = raw, and the worker's own
   per-window accounting and checkpoint counts agree with it; every gap is flagged with its size;
2. terms vs reality (``published``, ``cluster``): published fields, k, ε,
   headers and versions; topic retention/cleanup; pseudonym keys; ACLs;
3. canary scan (``canary``): no raw identifier on a public topic or in a DLQ header;
4. linked views (``linked``): the interval attacker (``attacker``) bounds every withheld group
   of views released together; none may be pinned below k (counts only, never values).

The report is reproducible: it names the offsets it read, and holds no wall-clock time
(``generated_at`` is added outside the body, on request). ``ok`` is false on any violation.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from broker.audit.audience import PUBLIC, for_audience
from broker.audit.canary import CanaryScan, Needles
from broker.audit.cluster import check_acls, check_keys, check_topics
from broker.audit.linked import check_linked
from broker.audit.model import REPORT_FORMAT, Findings, Period
from broker.audit.published import PublicTopicCheck, versions_seen
from broker.audit.read import ClusterReader, TopicRead
from broker.audit.reconcile import (
    ViewReconciliation,
    accounting_records,
    checkpoints,
    dlq_summary,
    published_rows,
    reconcile_view,
)
from broker.audit.replay import StreamReplay, StreamTally
from broker.kafka import publish, topics
from broker.kafka.internal import source_name
from broker.kafka.public_reader import iso_utc
from broker.kafka.settings import KafkaSettings
from contracts.model import Contract
from contracts.policy_hash import policy_hash, short_policy_hash


class _Audit:
    """One audit run: the reads and the sections, in dependency order."""

    def __init__(self, contract: Contract, reader: ClusterReader, period: Period) -> None:
        self.contract = contract
        self.reader = reader
        self.period = period
        self.findings = Findings()
        self.reads: list[TopicRead] = []
        self.tallies: dict[str, StreamTally] = {}

    def read(self, topic: str) -> TopicRead:
        found = self.reader.read(topic)
        self.reads.append(found)
        return found

    def run(self) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any], dict[str, Any]]:
        """Reconciliation, terms, canary and linked-views sections."""
        contract = self.contract
        state = self.read(topics.state_topic(contract))
        publics = {v.name: self.read(contract.topic_public(v)) for v in contract.views}
        streams, views = [], []
        dlqs: list[TopicRead] = []
        for stream in contract.streams:
            stream_row, view_rows, dlq = self._stream(stream.name, state, publics)
            streams.append(stream_row)
            views += view_rows
            dlqs.append(dlq)
        identifiers = {i for t in self.tallies.values() for i in t.identifiers}
        needles = Needles.of(identifiers)
        terms = self._terms(publics, needles)
        canary = CanaryScan(needles, publish.public_schemas([contract]), self.findings)
        for name in sorted(publics):
            canary.public(publics[name])
        for dlq in dlqs:
            canary.dlq(dlq)
        published = {v.name: published_rows(contract, v, publics[v.name]) for v in contract.views}
        linked = check_linked(contract, self.tallies, published, self.period, self.findings)
        return {"streams": streams, "views": views}, terms, canary.result(), linked

    def _stream(
        self, stream: str, state: TopicRead, publics: dict[str, TopicRead]
    ) -> tuple[dict[str, Any], list[dict[str, Any]], TopicRead]:
        contract = self.contract
        views = contract.views_of(stream)
        points = {
            v.name: checkpoints(self.read(topics.partials_topic(contract, v)), v.name)
            for v in views
        }
        positions = {v: {s: p.position for s, p in pts.items()} for v, pts in points.items()}
        raw = self.read(contract.topic_raw(stream))
        replay = StreamReplay(contract, stream, positions)
        for partition in sorted(raw.records):
            replay.run(partition, raw.records[partition], self.period)
        replay.finish()
        tally = self.tallies[stream] = replay.tally
        dlq = self.read(contract.topic_dlq(stream))
        rejected = dlq_summary(dlq, self.period, self.findings)
        sources = [source_name(p) for p in sorted(raw.records)]
        rows = []
        for view in views:
            recon = ViewReconciliation(
                view,
                tally.views[view.name],
                published_rows(contract, view, publics[view.name]),
                accounting_records(state, view.name),
                points[view.name],
                self.findings,
                sorted(raw.records),
            )
            row = reconcile_view(
                view, tally, recon, self.period, raw_complete=not raw.trimmed, sources=sources
            )
            row["checkpoints_compared"] = row["worker_checkpoint_counts"] is not None
            rows.append(row)
        stream_row = {
            "stream": stream,
            "raw_events": tally.raw_events,
            "rejected": rejected["records"],
            "events_in": tally.raw_events + rejected["records"] + tally.undecodable,
            "rejected_by_reason": rejected["by_reason"],
            "undecodable": tally.undecodable,
            "control_records": tally.control,
            "raw_topic_trimmed": raw.trimmed,
        }
        return stream_row, rows, dlq

    def _terms(self, publics: dict[str, TopicRead], needles: Needles) -> dict[str, Any]:
        contract = self.contract
        seen: Counter[tuple[str, str]] = Counter()
        view_rows = []
        for view in contract.views:
            check = PublicTopicCheck(contract, view, self.findings, needles.redact)
            check.check(publics[view.name], self.period)
            published = published_rows(contract, view, publics[view.name])
            published.reports = {
                s: r for s, r in published.reports.items() if self.period.contains(s)
            }
            published.groups = {
                s: g for s, g in published.groups.items() if self.period.contains(s)
            }
            view_rows.append(check.result(published))
            seen.update(check.versions)
        names = [spec.name for spec in topics.contract_topics(contract)]
        partitions, configs = self.reader.describe(names)
        latest = [t.max_event_time for t in self.tallies.values() if t.max_event_time is not None]
        raw_versions: Counter[str] = Counter()
        for tally in self.tallies.values():
            raw_versions.update(tally.versions)
        return {
            "views": view_rows,
            "topics": check_topics(contract, partitions, configs, self.findings),
            "keys": check_keys(
                contract,
                self.read(topics.keys_topic(contract)),
                max(latest) if latest else None,
                self.findings,
            ),
            "acls": check_acls(contract, self.reader.acls(), self.findings),
            "versions": {
                "public": versions_seen(contract, seen, self.findings),
                "raw": [
                    {"contract_version": v, "records": n} for v, n in sorted(raw_versions.items())
                ],
            },
        }


def audit(
    contract: Contract,
    kafka: KafkaSettings | str,
    period: Period | None = None,
    *,
    audience: str = PUBLIC,
) -> dict[str, Any]:
    """The audit report of ``contract`` over ``period`` (default: everything on the topics).

    ``audience``: ``public`` (default; nothing a suppressed group's size can be derived from)
    or ``confidential`` (every count, for the DPO); see ``broker.audit.audience``.
    """
    period = period or Period()
    with ClusterReader(kafka) as reader:
        run = _Audit(contract, reader, period)
        reconciliation, terms, canary, linked = run.run()
    findings = run.findings.sorted()
    severities = Counter(f.severity.value for f in findings)
    report = {
        "format": REPORT_FORMAT,
        "ok": run.findings.ok,
        "contract": {
            "id": contract.id,
            "version": contract.version,
            "title": contract.title,
            "provider": contract.provider.id,
            "beneficiary": contract.beneficiary.id,
            "policy_hash": policy_hash(contract),
            "policy_hash_short": short_policy_hash(contract),
        },
        "period": _period(period),
        "summary": {
            "violations": severities.get("violation", 0),
            "warnings": severities.get("warning", 0),
        },
        "findings": [f.to_dict() for f in findings],
        "reconciliation": reconciliation,
        "terms": terms,
        "canary": canary,
        "linked": linked,
        "read": {
            t.topic: {str(p): [t.start[p], t.end[p]] for p in sorted(t.end)} if t.exists else None
            for t in sorted(run.reads, key=lambda t: t.topic)
        },
    }
    return for_audience(report, audience)


def _period(period: Period) -> dict[str, Any]:
    return {
        "since_ms": period.since_ms,
        "until_ms": period.until_ms,
        "since": None if period.since_ms is None else iso_utc(period.since_ms),
        "until": None if period.until_ms is None else iso_utc(period.until_ms),
        "raw_events_by": "event time",
        "rejected_by": "rejection time",
        "windows_by": "window start",
    }


def exit_code(report: dict[str, Any]) -> int:
    """0 when the audit found no violation, 1 otherwise (for CI and cron)."""
    return 0 if report["ok"] else 1
