"""Terms vs reality on the public topics: fields, k, ε, headers, contract versions.

Every record found on ``public.<c>.<v>`` is checked, not just the ones that decode:

* its key must be ``{"window_start", "window_end", "group"}`` (or ``"report": true``) with
  exactly the view's dimensions in ``group``;
* its value must carry one of the two schema ids generated from the view (``broker.kafka.publish``)
  and decode completely with it: an unknown id, or bytes left over after the view's fields,
  mean fields the contract does not name;
* its headers must be the publication headers, for this contract, with the contract's version
  and policy hash (another version is a warning; the same version under another hash is a
  violation: the policy changed without a new version).

Reports give the k applied and the ε spent, which are compared with the contract.
"""

from __future__ import annotations

import json
import math
from collections import Counter
from collections.abc import Callable, Mapping
from typing import Any

from kafka.consumer.fetcher import ConsumerRecord

from broker.audit.model import Findings, Period, period_label, where
from broker.audit.read import TopicRead
from broker.audit.reconcile import Published
from broker.kafka import publish
from broker.kafka.serde import SerializationError, decode_body, read_header
from contracts.model import Contract, View
from contracts.policy_hash import short_policy_hash

SECTION = "terms"
WINDOW_FIELDS = ("window_start", "window_end")
PUBLIC_HEADERS = frozenset(
    {
        publish.H_CONTRACT,
        publish.H_CONTRACT_VERSION,
        publish.H_POLICY_HASH,
        publish.H_KEY_IDS,
        publish.H_WINDOW_START,
        publish.H_WINDOW_END,
    }
)


class PublicTopicCheck:
    """Checks every record of one view's public topic; ``result()`` is its report section."""

    def __init__(
        self, contract: Contract, view: View, findings: Findings, redact: Callable[[str], str] = str
    ) -> None:
        self.contract = contract
        self.redact = redact  # names found in records are printed only if no identifier
        self.view = view
        self.findings = findings
        self.group_schema = publish.release_schema(contract, view)
        self.report_schema = publish.report_schema(contract, view)
        schemas = publish.public_schemas([contract])
        subject = publish.public_subject(contract, view)
        self.parsed = {entry.schema_id: entry for entry in schemas if entry.subject == subject}
        self.dimensions = tuple(d.name for d in view.group_by)
        # The view's columns, and the suppression report's fixed fields (k, counts of groups).
        self.allowed = frozenset(
            (
                *WINDOW_FIELDS,
                *view.output_fields,
                *(f["name"] for f in self.report_schema["fields"]),
            )
        )
        self.fields_found: set[str] = set()
        self.schema_ids: Counter[int] = Counter()
        self.versions: Counter[tuple[str, str]] = Counter()
        self.records = 0
        self.rejected = 0

    def check(self, public: TopicRead, period: Period) -> None:
        """Every record of the topic (whose window, when readable, lies in the period)."""
        for record in public.all():
            key = _json_key(record.key)
            start = key.get("window_start") if isinstance(key, dict) else None
            if isinstance(start, int) and not period.contains(start):
                continue
            self.records += 1
            ok = self._check_key(record, key)
            ok = self._check_value(record) and ok
            ok = self._check_headers(record) and ok
            self.rejected += not ok

    def _flag(self, code: str, message: str, record: ConsumerRecord, part: str) -> bool:
        self.findings.violation(
            SECTION,
            code,
            f"view {self.view.name}: {message}",
            where(record.topic, record.partition, record.offset, part),
        )
        return False

    def _check_key(self, record: ConsumerRecord, key: Any) -> bool:
        if not isinstance(key, dict):
            return self._flag("bad-key", "a record key is not the publication key", record, "key")
        expected = {*WINDOW_FIELDS, "report"} if key.get("report") else {*WINDOW_FIELDS, "group"}
        extra = sorted(self.redact(str(k)) for k in set(key) - expected)
        group = key.get("group", {})
        if isinstance(group, dict):
            self.fields_found.update(self.redact(str(g)) for g in group)
            extra += sorted(
                f"group.{self.redact(str(g))}" for g in set(group) - set(self.dimensions)
            )
        if extra:
            return self._flag(
                "extra-field",
                f"published key field(s) not in the contract: {', '.join(extra)}",
                record,
                "key",
            )
        return True

    def _check_value(self, record: ConsumerRecord) -> bool:
        value = record.value
        if value is None:
            return True  # a tombstone publishes nothing
        try:
            sid = read_header(value)
        except SerializationError:
            return self._flag("bad-value", "a value is not Confluent-framed Avro", record, "value")
        self.schema_ids[sid] += 1
        entry = self.parsed.get(sid)
        if entry is None:
            return self._flag(
                "unknown-schema",
                f"schema id {sid} is not generated from the "
                "contract's view: its fields are not the contract's",
                record,
                "value",
            )
        self.fields_found.update(f["name"] for f in entry.raw["fields"])
        try:
            decode_body(value, entry.parsed)
        except SerializationError as exc:
            return self._flag(
                "extra-field",
                f"the value does not decode with the view's "
                f"schema ({exc.reason.value}): more than the contract's fields",
                record,
                "value",
            )
        return True

    def _check_headers(self, record: ConsumerRecord) -> bool:
        headers = dict(record.headers or [])
        ok = True
        unknown = sorted(self.redact(name) for name in set(headers) - PUBLIC_HEADERS)
        if unknown:
            self.findings.warning(
                SECTION,
                "extra-header",
                (
                    f"view {self.view.name}: header(s) outside the publication format: "
                    f"{', '.join(unknown)}"
                ),
                where(record.topic, record.partition, record.offset),
            )
        if headers.get(publish.H_CONTRACT) != self.contract.id.encode():
            ok = self._flag(
                "foreign-record", "a record does not name this contract", record, "headers"
            )
        version = _text(headers.get(publish.H_CONTRACT_VERSION))
        digest = _text(headers.get(publish.H_POLICY_HASH))
        self.versions[(version, digest)] += 1
        return ok

    def result(self, published: Published) -> dict[str, Any]:
        """Fields, k and ε of the view as found."""
        extra = sorted(self.fields_found - self.allowed - {"group", "report"})
        return {
            "view": self.view.name,
            "records": self.records,
            "records_rejected": self.rejected,
            "fields_allowed": sorted(self.allowed),
            "fields_found": sorted(self.fields_found - {"group", "report"}),
            "fields_extra": extra,
            "schema_ids": {str(k): v for k, v in sorted(self.schema_ids.items())},
            **check_k(self.view, published, self.findings),
            "epsilon": check_epsilon(self.view, published, self.findings),
        }


def check_k(view: View, published: Published, findings: Findings) -> dict[str, Any]:
    """k stated in the reports, and distinct-subject measures of published groups (no noise)."""
    ks = Counter(r.k for r in published.reports.values())
    for k in sorted(set(ks) - {view.k}):
        findings.violation(
            SECTION,
            "k-mismatch",
            (f"view {view.name}: {ks[k]} report(s) state k={k}, the contract says k={view.k}"),
        )
    measures = [m.name for m in view.measures if m.type == "distinct_subjects"]
    below = 0
    if measures and view.noise is None:
        for groups in published.groups.values():
            for row in groups.values():
                if any(int(row.measures.get(m) or 0) < view.k for m in measures):
                    below += 1
                    findings.violation(
                        SECTION,
                        "below-k",
                        (
                            f"view {view.name}: a published group counts fewer than k={view.k} "
                            "distinct subjects"
                        ),
                        where(row.topic, row.partition, row.offset),
                    )
    return {
        "k_contract": view.k,
        "k_reported": sorted(ks),
        "groups_checked_for_k": sum(len(g) for g in published.groups.values())
        if measures and view.noise is None
        else 0,
        "groups_below_k": below,
    }


def check_epsilon(view: View, published: Published, findings: Findings) -> dict[str, Any]:
    """ε spent per budget period (from the reports) against the contract's budget."""
    noise = view.noise
    if noise is None:
        stated = sorted({r.epsilon for r in published.reports.values()} - {0.0})
        if stated:
            findings.violation(
                SECTION,
                "epsilon-without-noise",
                (f"view {view.name}: reports state ε {stated} but the view has no noise"),
            )
        return {"noise": False}
    period_ms = int(noise.period.total_seconds() * 1000)
    # Sequential composition: every noised measure of a window spends ε.
    cost = float(view.epsilon_per_window)
    by_period: dict[int, float] = {}
    for report in published.reports.values():
        if report.epsilon != 0.0 and not math.isclose(report.epsilon, cost, rel_tol=1e-9):
            findings.violation(
                SECTION,
                "epsilon-mismatch",
                (
                    f"view {view.name}: a window spent ε={report.epsilon}, the contract says "
                    f"{cost:g} ({noise.epsilon:g} × ({view.noised_measures} noised measures"
                    " + 1 release decision))"
                ),
            )
        period = report.window_start // period_ms
        by_period[period] = by_period.get(period, 0.0) + report.epsilon
    for period, spent in sorted(by_period.items()):
        if spent > noise.budget + 1e-9:
            findings.violation(
                SECTION,
                "budget-exceeded",
                (
                    f"view {view.name}: ε spent {spent:g} in the period "
                    f"{period_label(period * period_ms, period_ms)} (UTC) exceeds the budget "
                    f"{noise.budget:g}"
                ),
            )
    return {
        "noise": True,
        "epsilon": noise.epsilon,
        "epsilon_per_window": cost,
        "budget": noise.budget,
        "period_ms": period_ms,
        "spent": [
            {"period_start": p * period_ms, "spent": round(s, 9)}
            for p, s in sorted(by_period.items())
        ],
    }


def versions_seen(
    contract: Contract, seen: Mapping[tuple[str, str], int], findings: Findings
) -> list[dict[str, Any]]:
    """Contract versions and policy hashes in public headers, against the contract's."""
    mine = (str(contract.version), short_policy_hash(contract))
    out = []
    for (version, digest), n in sorted(seen.items()):
        out.append({"contract_version": version, "policy_hash": digest, "records": n})
        if (version, digest) == mine:
            continue
        if version == mine[0]:
            findings.violation(
                SECTION,
                "policy-hash-mismatch",
                (
                    f"{n} public record(s) of version {version} carry policy hash {digest}, "
                    f"the contract's is {mine[1]}: the policy changed without a new version"
                ),
            )
        else:
            findings.warning(
                SECTION,
                "other-version",
                (f"{n} public record(s) come from contract version {version or '(none)'}"),
            )
    return out


def _json_key(key: bytes | None) -> Any:
    if key is None:
        return None
    try:
        return json.loads(key)
    except ValueError:
        return None


def _text(value: bytes | None) -> str:
    return "" if value is None else value.decode("utf-8", "replace")
