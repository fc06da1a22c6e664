"""The audit of a real run: simulated micromobility events and refused payloads, through a
``respublica worker`` subprocess to the end of the stream, then ``respublica audit``.

The reconciliation must be exact (gap 0, every window accounted by the worker and equal to the
batch oracle's event totals), the canary scan must find nothing, and the same period audited
twice must give the same report, byte for byte.
"""

from __future__ import annotations

import json
import os
import re
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from kafka import KafkaAdminClient, KafkaProducer

from broker.audit.model import Period
from broker.audit.render import render
from broker.audit.run import audit, exit_code
from broker.cli import main
from broker.kafka.public_reader import read_view
from broker.kafka.settings import as_settings
from contracts.model import Contract
from policies.oracle import evaluate
from policies.pseudonymise import KeyRing
from tests.audit.support import CONFIDENTIAL_KEYS, bad_payloads, keys_in, produce_rejected
from tests.worker.conftest import free_port
from tests.worker.support import (
    WorkerProcess,
    create_topics,
    delete_topics,
    expected_windows,
    feed,
    mobility_events,
    read_public,
    unique_contract,
    wait_for,
)

pytestmark = pytest.mark.integration

EVENTS = int(os.environ.get("RESPUBLICA_AUDIT_EVENTS", "25000"))
REJECTED = 40
HOUR_MS = 3_600_000


@dataclass
class Run:
    """A finished run: the contract, its events and what was refused."""

    contract: Contract
    events: dict[str, list[dict[str, Any]]]
    reasons: Counter[str]
    bootstrap: str


@pytest.fixture(scope="module")
def run(
    kafka_bootstrap: str, kafka_admin: KafkaAdminClient, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Run]:
    tmp = tmp_path_factory.mktemp("audit-run")
    contract = unique_contract(tmp, "micromobility")
    names = create_topics(kafka_bootstrap, contract)
    producer = KafkaProducer(
        **as_settings(kafka_bootstrap).kafka_python("tests"),
        acks="all",
        enable_idempotence=True,
        linger_ms=20,
        batch_size=256 * 1024,
    )
    worker = WorkerProcess(
        kafka_bootstrap,
        [Path(str(contract.source))],
        "audit-1",
        f"test-{uuid.uuid4().hex[:8]}",
        tmp,
        free_port(),
    )
    try:
        events = mobility_events(EVENTS)
        first = events["vehicle_events"][0]
        reasons = produce_rejected(
            producer,
            contract,
            "vehicle_events",
            bad_payloads(first, REJECTED),
            now_ms=first["timestamp"],
        )
        feed(producer, contract, events)
        expected = {
            v: expected_windows(contract, events, v) for v in ("availability", "origin_destination")
        }
        worker.start()

        def released() -> bool:
            assert worker.alive(), worker.log_tail()
            return all(
                len(read_public(kafka_bootstrap, contract, v).windows) >= len(w)
                for v, w in expected.items()
            )

        wait_for(released, 240, "every window of both views", every_s=1.0)
        assert worker.terminate() == 0, worker.log_tail()
        yield Run(contract, events, reasons, kafka_bootstrap)
    finally:
        worker.terminate(timeout_s=30)
        producer.close(timeout=10)
        delete_topics(kafka_admin, names)


def _view(report: dict[str, Any], name: str) -> dict[str, Any]:
    return next(v for v in report["reconciliation"]["views"] if v["view"] == name)


def test_the_audit_of_a_clean_run_reconciles_exactly(run: Run) -> None:
    report = audit(run.contract, run.bootstrap, audience="confidential")
    violations = [f for f in report["findings"] if f["severity"] == "violation"]
    assert violations == []
    assert report["ok"] and exit_code(report) == 0

    stream = report["reconciliation"]["streams"][0]
    assert stream["stream"] == "vehicle_events"
    assert stream["raw_events"] == len(run.events["vehicle_events"])
    assert stream["rejected"] == REJECTED
    assert stream["rejected_by_reason"] == dict(sorted(run.reasons.items()))
    assert len(run.reasons) >= 3
    assert stream["events_in"] == stream["raw_events"] + REJECTED

    oracle = evaluate(run.contract, run.events, keyring=KeyRing())
    for name in ("availability", "origin_destination"):
        view = _view(report, name)
        stream_events = run.events[run.contract.view(name).stream]
        assert view["gap"] == 0, view["gap_detail"]
        assert view["events_in"] == len(stream_events)
        assert (
            view["published"]
            + view["suppressed"]
            + view["late"]
            + view["filtered"]
            + view["outside"]
            + view["open"]
            == view["events_in"]
        )
        assert view["open"] == 0 and view["late"] == 0
        # The batch oracle, which shares no code with the worker's merge, agrees.
        releases = oracle[name]
        assert view["published"] == sum(r.report.events_published for r in releases)
        assert view["suppressed"] == sum(r.report.events_suppressed for r in releases)
        assert view["published"] > 0 and view["suppressed"] > 0
        assert view["windows"]["released"] == len(releases)
        assert view["windows"]["with_accounting"] == len(releases)
        assert view["worker_checkpoint_counts"]["folded"] == view["published"] + view["suppressed"]
    availability = _view(report, "availability")
    assert availability["filtered"] == sum(
        1 for e in run.events["vehicle_events"] if e["event_type"] != "available"
    )

    terms = {v["view"]: v for v in report["terms"]["views"]}
    assert terms["availability"]["fields_extra"] == []
    assert terms["availability"]["k_reported"] == [run.contract.view("availability").k]
    assert terms["availability"]["groups_checked_for_k"] > 0
    assert all(t["ok"] for t in report["terms"]["topics"])
    assert report["terms"]["keys"]["epochs_stored"]
    assert report["terms"]["acls"]["enforced"]  # the session broker has an authorizer
    assert report["canary"]["hits"] == 0
    assert report["canary"]["identifiers"] > 100


def test_the_same_period_twice_gives_the_same_report(run: Run) -> None:
    start = min(e["timestamp"] for e in run.events["vehicle_events"])
    since = (start // HOUR_MS + 1) * HOUR_MS
    period = Period(since, since + 3 * HOUR_MS)
    first, second = (
        audit(run.contract, run.bootstrap, period, audience="confidential"),
        audit(run.contract, run.bootstrap, period, audience="confidential"),
    )
    for fmt in ("md", "json", "html"):
        assert render(first, fmt) == render(second, fmt)
    assert first["ok"], first["findings"]
    for view in first["reconciliation"]["views"]:
        assert view["gap"] == 0, view["gap_detail"]
        assert 0 < view["events_in"] < len(run.events[view["stream"]])
    assert "generated_at" not in render(first, "md")
    stamped = render(first, "md", "2026-06-02T00:00:00Z")
    assert stamped.startswith(render(first, "md"))


def test_the_cli_writes_each_format_and_exits_0(run: Run, tmp_path: Path) -> None:
    assert run.contract.source is not None
    base = ["audit", str(run.contract.source), "--bootstrap", run.bootstrap]
    out = tmp_path / "report.json"
    assert main([*base, "--format", "json", "--out", str(out)]) == 0
    data = json.loads(out.read_text())
    assert data["ok"] is True
    assert data["audience"] == "public"  # the default: what citizen watchdogs may read
    assert not {key for _, key in keys_in(data)} & CONFIDENTIAL_KEYS
    dpo = tmp_path / "dpo.json"
    assert main([*base, "--format", "json", "--audience", "confidential", "--out", str(dpo)]) == 0
    full = json.loads(dpo.read_text())
    assert full["audience"] == "confidential"
    assert all("suppressed" in v for v in full["reconciliation"]["views"])
    assert {"severity", "code", "message"} <= set(data["findings"][0])  # warnings only
    assert (
        data["contract"]["policy_hash_short"]
        == data["terms"]["versions"]["public"][0]["policy_hash"]
    )
    page = tmp_path / "report.html"
    assert main([*base, "--format", "html", "--out", str(page), "--generated-at"]) == 0
    assert page.read_text().startswith("<!DOCTYPE html>")
    assert "generated_at" in page.read_text()


def numbers_in(data: Any) -> set[int]:
    """Every integer of a JSON document, and every integer written in its strings."""
    if isinstance(data, dict):
        data = list(data.values())
    if isinstance(data, list):
        out: set[int] = set()
        for item in data:
            out |= numbers_in(item)
        return out
    if isinstance(data, str):
        return {int(n) for n in re.findall(r"\d+", data)}
    return {data} if isinstance(data, int) and not isinstance(data, bool) else set()


def test_the_public_report_gives_no_suppressed_count(run: Run) -> None:
    """From the public report and the public topic, no suppressed count can be derived.

    The attacker adds up the published groups' counts of a view (P, exact: no noise) and
    looks in the report for the suppressed total S, or for any total that covers suppressed
    events (raw, events in, P + S, ...), from which S = total − P − (other dispositions).
    """
    confidential = audit(run.contract, run.bootstrap, audience="confidential")
    public = audit(run.contract, run.bootstrap)  # the default audience
    assert (public["audience"], confidential["audience"]) == ("public", "confidential")
    assert public["ok"] == confidential["ok"]
    assert [f["code"] for f in public["findings"]] == [f["code"] for f in confidential["findings"]]

    leaks = [(path, key) for path, key in keys_in(public) if key in CONFIDENTIAL_KEYS]
    assert leaks == [], "a count of suppressed (or covering) events is in the public report"
    assert "suppressed" not in json.dumps(public["reconciliation"])

    texts = {fmt: render(public, fmt) for fmt in ("json", "md", "html")}
    secrets_texts = {fmt: render(confidential, fmt) for fmt in ("json", "md", "html")}
    public_numbers = numbers_in(public)
    oracle = evaluate(run.contract, run.events, keyring=KeyRing())
    stream_rows = {s["stream"]: s for s in confidential["reconciliation"]["streams"]}
    for name, count in (("availability", "events"), ("origin_destination", "trips")):
        view = _view(confidential, name)
        published = sum(
            int(g.measures[count]) for g in read_view(run.bootstrap, run.contract, name).groups
        )
        assert published == view["published"]  # what anyone can add up from the public topic
        suppressed = view["suppressed"]
        assert suppressed > 0
        stream = stream_rows[view["stream"]]
        covering = {
            suppressed,
            published + suppressed,
            view["events_in"],
            stream["events_in"],
            view["events_in"] - published,
        }
        assert not covering & public_numbers, (name, covering & public_numbers)
        for fmt, text in texts.items():
            tokens = set(re.findall(r"\d+", text))
            assert not {str(n) for n in covering} & tokens, (name, fmt)
            assert str(suppressed) in set(re.findall(r"\d+", secrets_texts[fmt]))
        # Per window: the public report says nothing about any one window that suppressed a
        # group (its suppressed events are one group's size when only one was suppressed).
        windows = [r for r in oracle[name] if r.report.groups_suppressed >= 1]
        assert windows, "no window suppressed anything: the test would prove nothing"
        assert not {r.window.start for r in windows} & public_numbers
