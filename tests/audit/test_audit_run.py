"""The audit of a real run: simulated micromobility events and refused payloads, through a
``respublica worker`` subprocess to the end of the stream, then ``respublica audit``.

The reconciliation must be exact (gap 0, every window accounted by the worker and equal to the
batch oracle's event totals), the canary scan must find nothing, and the same period audited
twice must give the same report, byte for byte.
"""

from __future__ import annotations

import json
import os
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
from contracts.model import Contract
from policies.oracle import evaluate
from policies.pseudonymise import KeyRing
from tests.audit.support import bad_payloads, produce_rejected
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
        bootstrap_servers=kafka_bootstrap,
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
    report = audit(run.contract, run.bootstrap)
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
    assert not report["terms"]["acls"]["enforced"]
    assert report["canary"]["hits"] == 0
    assert report["canary"]["identifiers"] > 100


def test_the_same_period_twice_gives_the_same_report(run: Run) -> None:
    start = min(e["timestamp"] for e in run.events["vehicle_events"])
    since = (start // HOUR_MS + 1) * HOUR_MS
    period = Period(since, since + 3 * HOUR_MS)
    first, second = (
        audit(run.contract, run.bootstrap, period),
        audit(run.contract, run.bootstrap, period),
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
    assert {"severity", "code", "message"} <= set(data["findings"][0])  # warnings only
    assert (
        data["contract"]["policy_hash_short"]
        == data["terms"]["versions"]["public"][0]["policy_hash"]
    )
    page = tmp_path / "report.html"
    assert main([*base, "--format", "html", "--out", str(page), "--generated-at"]) == 0
    assert page.read_text().startswith("<!DOCTYPE html>")
    assert "generated_at" in page.read_text()
