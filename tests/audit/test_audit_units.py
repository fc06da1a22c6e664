"""Pure parts of the audit: needles, ACL matching, topic configs, findings, rendering."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest

from broker.audit.canary import MIN_LENGTH, Needles
from broker.audit.cluster import acl_grants, check_acls, check_topics
from broker.audit.model import Findings, Period, fingerprint
from broker.audit.read import AclState
from broker.audit.reconcile import Published, ViewReconciliation, due_windows
from broker.audit.render import render
from broker.audit.replay import ViewTally
from broker.kafka import acls, topics
from broker.kafka.acls import AclBinding
from broker.kafka.internal import CONTROL_HEADER, END_OF_STREAM_MARK, Checkpoint
from broker.kafka.public_reader import WindowReport
from broker.worker.merge import MergeStage
from broker.worker.metrics import WorkerMetrics
from broker.worker.partials import PartialsStage, RawRecord
from contracts.model import Contract
from policies.base import EMPTY_WINDOWS_AFTER_DATA, NO_WATERMARK, Disposition
from policies.compile import compile_contract
from policies.pseudonymise import KeyRing
from policies.spec import view_spec
from tests.worker.support import encode_raw, mobility_events, unique_contract

pytestmark = pytest.mark.unit


@pytest.fixture
def contract(tmp_path: Path) -> Contract:
    return unique_contract(tmp_path, "micromobility")


def test_needles_match_any_case_and_skip_short_identifiers() -> None:
    needles = Needles.of(["Veh-00042", "abc", "veh-00042"])
    assert needles.identifiers == 2 and needles.too_short == 1
    assert needles.find(b'{"x":"VEH-00042"}') <= {"Veh-00042", "veh-00042"}
    assert needles.find(b'{"x":"VEH-00042"}')
    assert needles.find(b"[Veh-00042]") == {"Veh-00042"}
    assert needles.find(b"abc veh-0004") == set()
    assert len(fingerprint("Veh-00042")) == len("sha256:") + 12
    assert needles.redact("x-Veh-00042") == fingerprint("x-Veh-00042")
    assert needles.redact("cell") == "cell"
    assert MIN_LENGTH == 6


def _grant(principal: str, resource: str, op: str, pattern: str = "LITERAL") -> AclBinding:
    return AclBinding(principal, "TOPIC", resource, pattern, op)


def test_acl_grants_follow_prefixes_and_deny_wins() -> None:
    names = ["public.c.a", "public.c.b", "raw.c.s"]
    bindings = [
        _grant("User:x", "public.c.", "READ", "PREFIXED"),
        AclBinding("User:x", "TOPIC", "public.c.b", "LITERAL", "READ", "DENY"),
        _grant("User:y", "*", "ALL"),
        _grant("User:z", "raw.c.s", "WRITE"),
        AclBinding("User:*", "TOPIC", "raw.", "PREFIXED", "ALL", "DENY"),
        AclBinding("User:w", "GROUP", "public.c.", "PREFIXED", "READ"),  # not a topic
    ]
    assert acl_grants(bindings, names) == {
        ("User:x", "public.c.a", "READ"),
        ("User:y", "public.c.a", "ALL"),
        ("User:y", "public.c.b", "ALL"),
    }


def _group(principal: str, name: str, pattern: str) -> AclBinding:
    return AclBinding(principal, "GROUP", name, pattern, "READ")


def test_acls_without_an_authorizer_or_unreadable_are_violations(contract: Contract) -> None:
    findings = Findings()
    check_acls(contract, AclState(enforced=False), findings)
    assert not findings.ok
    assert [(f.severity.value, f.code) for f in findings.sorted()] == [
        ("violation", "acls-not-enforced")
    ]
    findings = Findings()
    check_acls(
        contract, AclState(enforced=False, error="ClusterAuthorizationFailedError"), findings
    )
    assert [f.code for f in findings.sorted()] == ["acls-unreadable"]


def test_the_bindings_apply_creates_pass_the_audit(contract: Contract) -> None:
    findings = Findings()
    state = AclState(enforced=True, bindings=acls.contract_bindings(contract))
    result = check_acls(contract, state, findings)
    assert findings.sorted() == []
    rows = {(g["principal"], g["topic"]): g["operations"] for g in result["grants"]}
    worker = acls.worker_principal(contract)
    assert result["groups"] == [
        {"principal": worker, "group": f"respublica.{contract.id}.{stage}", "operations": ["READ"]}
        for stage in ("merge", "raw")
    ]
    assert rows[("User:lyon-opendata", contract.topic_public("availability"))] == [
        "DESCRIBE",
        "READ",
    ]
    # Without any grant, the consumers' read grants and the worker's group grants are missing
    # (warnings, not violations).
    findings = Findings()
    check_acls(contract, AclState(enforced=True), findings)
    codes = {f.code for f in findings.sorted()}
    assert findings.ok and codes == {"acl-missing", "acl-worker-group-missing"}


def test_acls_wider_than_the_contract_are_violations(contract: Contract) -> None:
    c = contract.id
    stranger, analysts = "User:stranger", "User:lyon-analysts"
    cases = [
        (_grant("User:lyon-opendata", f"public.{c}.", "READ", "PREFIXED"), "acl-extra-reader"),
        (
            _grant("User:lyon-opendata", contract.topic_public("origin_destination"), "READ"),
            "acl-extra-reader",
        ),
        (_grant(analysts, f"raw.{c}.", "READ", "PREFIXED"), "acl-internal-reader"),
        (_grant(stranger, f"dlq.{c}.", "DESCRIBE", "PREFIXED"), "acl-internal-grant"),
        (_grant(stranger, "respublica.", "READ", "PREFIXED"), "acl-internal-grant"),
        (
            _grant(acls.worker_principal("other"), f"respublica.{c}.", "WRITE", "PREFIXED"),
            "acl-internal-grant",
        ),
        (_grant(stranger, contract.topic_public("availability"), "WRITE"), "acl-public-writer"),
        (
            _grant(f"User:provider.{contract.provider.id}", f"ingest.{c}.", "READ", "PREFIXED"),
            "acl-ingest-grant",
        ),
        (_grant("User:*", f"raw.{c}.", "READ", "PREFIXED"), "acl-wildcard"),
        (_grant("User:*", "*", "WRITE"), "acl-wildcard"),
        # Consumer groups: another contract's worker on this one's, this worker beyond its own.
        (_group(acls.worker_principal("other"), "respublica.", "PREFIXED"), "acl-group-grant"),
        (_group(stranger, f"respublica.{c}.raw", "LITERAL"), "acl-group-grant"),
        (_group("User:*", "*", "LITERAL"), "acl-group-grant"),
        (_group(acls.worker_principal(contract), "respublica.", "PREFIXED"), "acl-worker-group"),
        (
            _group(acls.worker_principal(contract), "respublica.o.raw", "LITERAL"),
            "acl-worker-group",
        ),
    ]
    for binding, code in cases:
        findings = Findings()
        state = AclState(enforced=True, bindings=[*acls.contract_bindings(contract), binding])
        check_acls(contract, state, findings)
        violations = {f.code for f in findings.sorted() if f.severity.value == "violation"}
        assert violations == {code}, binding
    # Describing a public view is harmless; a DENY takes a grant back.
    harmless = [
        _grant(stranger, contract.topic_public("availability"), "DESCRIBE"),
        _grant(stranger, f"raw.{c}.", "READ", "PREFIXED"),
        AclBinding(stranger, "TOPIC", "raw.", "PREFIXED", "ALL", "DENY"),
        _group(stranger, "respublica.other.", "PREFIXED"),  # another contract's groups
        _group(stranger, f"respublica.{c}.", "PREFIXED"),
        AclBinding(stranger, "GROUP", "respublica.", "PREFIXED", "ALL", "DENY"),
    ]
    findings = Findings()
    check_acls(contract, AclState(True, [*acls.contract_bindings(contract), *harmless]), findings)
    assert findings.sorted() == []


def test_a_worker_without_its_group_grant_is_a_warning(contract: Contract) -> None:
    worker = acls.worker_principal(contract)
    granted = acls.contract_bindings(contract)
    without = [b for b in granted if not (b.resource_type == "GROUP" and b.principal == worker)]
    assert len(without) < len(granted)
    denied = AclBinding(
        worker, "GROUP", f"respublica.{contract.id}.merge", "LITERAL", "ALL", "DENY"
    )
    raw, merge = f"respublica.{contract.id}.raw", f"respublica.{contract.id}.merge"
    for bindings, missing in ((without, [merge, raw]), ([*granted, denied], [merge])):
        findings = Findings()
        check_acls(contract, AclState(True, bindings), findings)
        found = [(f.severity.value, f.code, f.where) for f in findings.sorted()]
        assert found == [("warning", "acl-worker-group-missing", g) for g in missing]


def test_topic_configs_against_the_contract(contract: Contract) -> None:
    specs = topics.contract_topics(contract)
    partitions = {s.name: s.partitions for s in specs[1:]}
    configs = {s.name: dict(s.configs) for s in specs}
    public = contract.topic_public("availability")
    configs[public]["cleanup.policy"] = "delete"
    configs[topics.keys_topic(contract)]["segment.ms"] = "1"
    findings = Findings()
    rows = check_topics(contract, partitions, configs, findings)
    by_code = sorted((f.severity.value, f.code, f.where) for f in findings.sorted())
    assert by_code == [
        ("violation", "topic-config", public),
        ("violation", "topic-missing", specs[0].name),
        ("warning", "topic-config", topics.keys_topic(contract)),
    ]
    assert sum(not r["ok"] for r in rows) == 3


def test_the_replay_classifies_like_the_streaming_fold(contract: Contract) -> None:
    tally = ViewTally(view_spec(contract, "availability"))
    base = {"event_type": "available", "lat": 45.76, "lon": 4.85, "vehicle_id": "v1"}
    t0 = 1_780_000_200_000  # a window start + 200 s
    assert (
        tally.classify(0, {**base, "event_type": "reserved", "timestamp": t0})[0]
        is Disposition.FILTERED
    )
    disposition, key = tally.classify(0, {**base, "timestamp": t0})
    assert disposition is Disposition.FOLDED and key is not None
    # An hour later on the same partition, the first window is closed: late.
    assert tally.classify(0, {**base, "timestamp": t0 + 3_600_000})[0] is Disposition.FOLDED
    assert tally.classify(0, {**base, "timestamp": t0})[0] is Disposition.LATE
    assert tally.classify(1, {**base, "timestamp": t0})[0] is Disposition.FOLDED  # other source
    assert (
        tally.classify(0, {**base, "lat": 48.85, "lon": 2.35, "timestamp": t0 + 3_600_000})[0]
        is Disposition.OUTSIDE
    )


HOUR = 3_600_000
CAP = EMPTY_WINDOWS_AFTER_DATA


def test_due_windows_follow_each_window_with_events_up_to_the_cap_and_the_time_passed() -> None:
    t0 = 1_780_002_000_000 // HOUR * HOUR
    hours = [t0 + i * HOUR for i in range(CAP + 10)]
    # Gaps between windows with events are due; after the last, only as far as time passed.
    assert due_windows([t0, t0 + 3 * HOUR], HOUR, 0, t0 + 6 * HOUR) == set(hours[:6])
    assert due_windows([t0, t0 + 3 * HOUR], HOUR, HOUR, t0 + 6 * HOUR) == set(hours[:5])
    assert due_windows([t0], HOUR, 0, NO_WATERMARK) == {t0}
    # A quiet span longer than the cap: its first CAP windows, then the next with events.
    later = t0 + (CAP + 5) * HOUR
    assert due_windows([t0, later], HOUR, 0, NO_WATERMARK) == {*hours[: CAP + 1], later}
    assert len(due_windows([t0], HOUR, 0, t0 + 10**6 * HOUR)) == CAP + 1


def _report(contract: Contract, start: int, suppressed: int) -> WindowReport:
    k = contract.view("availability").k
    return WindowReport(start, start + QUARTER, k, 0, suppressed, None, 0.0, {})


QUARTER = 15 * 60_000


def test_the_audit_finds_skipped_windows_and_a_report_nothing_makes_due(
    contract: Contract,
) -> None:
    tally = ViewTally(view_spec(contract, "availability"))
    base = {"event_type": "available", "lat": 45.76, "lon": 4.85, "vehicle_id": "v1"}
    t0 = 1_780_002_000_000 // QUARTER * QUARTER
    for partition, n in ((0, 0), (0, 3), (1, 8)):  # one event each in windows 0, 3 and 8
        record = {**base, "timestamp": t0 + n * QUARTER}
        _, key = tally.classify(partition, record)
        assert key is not None
        tally.fold(key, record)
    published = Published()
    # Reports of windows 0 and 3 (one group suppressed each), 2 (empty, due) and 12: nothing
    # makes 12 due (partition 0's time is at window 3), and 1, 4..7 and 8 are skipped.
    for n, suppressed in ((0, 1), (2, 0), (3, 1), (12, 0)):
        published.reports[t0 + n * QUARTER] = _report(contract, t0 + n * QUARTER, suppressed)
    findings = Findings()
    view = contract.view("availability")
    recon = ViewReconciliation(view, tally, published, {}, {}, findings, [0, 1])
    stats = recon.check_windows(Period(), None)
    found = [(f.code, f.message) for f in findings.sorted() if f.severity.value == "violation"]
    windows = {code: sorted(int(m.split()[3]) for c, m in found if c == code) for code, _ in found}
    assert windows == {
        "report-not-due": [t0 + 12 * QUARTER],
        "window-skipped": [t0 + n * QUARTER for n in (1, 4, 5, 6, 7, 8)],
    }
    assert (stats["released"], stats["empty"], stats["empty_open"], stats["open"]) == (4, 2, 5, 1)
    # With the raw topic trimmed, a report due to a deleted window is not held against it.
    trimmed = Findings()
    ViewReconciliation(view, tally, published, {}, {}, trimmed, [0, 1]).check_windows(Period(), t0)
    assert "report-not-due" not in {f.code for f in trimmed.sorted()}


def test_findings_are_sorted_violations_first_and_deduplicated() -> None:
    findings = Findings()
    findings.warning("b", "w", "second")
    findings.violation("z", "v", "first")
    findings.violation("z", "v", "first")
    assert [f.code for f in findings.sorted()] == ["v", "w"]
    assert Period(10, 20).contains(10) and not Period(10, 20).contains(20)
    assert Period().unbounded


def test_render_keeps_generated_at_out_of_the_body() -> None:
    report = {
        "ok": True,
        "format": "x",
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
        "summary": {"violations": 0, "warnings": 0},
        "findings": [],
        "reconciliation": {"streams": [], "views": []},
        "terms": {
            "views": [],
            "topics": [],
            "keys": {
                "topic": "k",
                "rotation": "1 day",
                "key_retention": "7 days",
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
    body = render(report, "md")
    assert "generated_at" not in body and body.startswith("# Audit of contract c (version 1)")
    assert render(report, "md", "2026-01-01T00:00:00Z").startswith(body)
    assert json.loads(render(report, "json", "now"))["generated_at"] == "now"
    assert "<strong>OK: no violation</strong>" in render(report, "html")


def test_the_workers_books_survive_a_crash_and_match_the_releases(contract: Contract) -> None:
    events = mobility_events(2_000, seed=4)["vehicle_events"]
    accepted = encode_raw(contract, "vehicle_events", events)
    raw = [RawRecord(i, a.value) for i, a in enumerate(accepted)]
    raw.append(RawRecord(len(raw), b"", [(CONTROL_HEADER, END_OF_STREAM_MARK)]))
    ring, metrics = KeyRing(), WorkerMetrics()

    def stage1() -> PartialsStage:
        views = compile_contract(contract, keyring=ring)
        return PartialsStage(
            contract,
            "vehicle_events",
            {"availability": views["availability"]},
            {"availability": "partials"},
            metrics,
            clock=lambda: 0.0,
        )

    first = stage1()
    first.restore(0, {})
    first.process(0, raw[:900])
    topic = [(r.key, r.value) for r in first.checkpoint(0)]
    first.process(0, raw[900:1200])  # folded, never checkpointed: lost in the crash
    point = Checkpoint.from_value("availability", topic[-1][1] or b"")
    assert sum(point.counts.values()) == 900
    second = stage1()
    resume = second.restore(0, {"availability": point})
    second.process(0, raw[resume - 100 :])  # a replay from before the checkpoint
    topic += [(r.key, r.value) for r in second.checkpoint(0)]
    last = Checkpoint.from_value("availability", topic[-1][1] or b"")
    assert sum(last.counts.values()) == len(events)
    assert last.counts["filtered"] == sum(e["event_type"] != "available" for e in events)

    merge = MergeStage(
        contract,
        compile_contract(contract, keyring=ring)["availability"],
        ["p0"],
        "state",
        metrics,
        clock=lambda: datetime(2027, 1, 1, tzinfo=UTC).timestamp(),
    )
    for offset, (key, value) in enumerate(topic):
        merge.feed(offset, key, value)
    output = merge.step()
    assert output is not None and output.releases
    books = {
        json.loads(r.value or b"")["window_start"]: json.loads(r.value or b"")
        for r in output.records
        if r.key.startswith(b"accounting|")
    }
    assert output.records[-1].key == b"merger|availability"  # the state stays last
    assert sorted(books) == [r.window.start for r in output.releases]
    for release in output.releases:
        booked = books[release.window.start]
        assert booked["events_published"] == release.report.events_published
        assert booked["events_suppressed"] == release.report.events_suppressed
    assert (
        sum(b["events_published"] + b["events_suppressed"] for b in books.values())
        == last.counts["folded"]
    )
