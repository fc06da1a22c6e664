"""The audit flags a deliberately broken setup: a retention the contract did not sign, a
published field it does not allow, a raw identifier planted in a public header or a DLQ
header. Each test starts from a contract whose audit is clean (raw events, no worker), breaks
one thing, and expects exactly that to fail the audit, with its topic and offset.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable

import pytest
from kafka import KafkaAdminClient, KafkaProducer
from kafka.admin import ConfigResource, ConfigResourceType

from broker.audit.render import render
from broker.audit.run import audit, exit_code
from broker.kafka import acls
from broker.kafka.acls import AclBinding
from contracts.model import Contract
from tests.audit.support import (
    codes,
    forged_groups,
    genuine_group,
    public_headers,
)
from tests.kafka.acl_support import require_authorizer
from tests.worker.support import encode_raw, mobility_events, produce_raw, wait_for

pytestmark = pytest.mark.integration

CELL = "881f90a0b1fffff"


@pytest.fixture
def raw_contract(
    contract_factory: Callable[..., Contract], producer_factory: Callable[..., KafkaProducer]
) -> tuple[Contract, list[dict[str, object]]]:
    """A micromobility contract with 1,500 raw events and nothing published yet."""
    contract = contract_factory("micromobility", partitions=1)
    events = mobility_events(1_500, seed=5)["vehicle_events"]
    produce_raw(
        producer_factory(),
        contract.topic_raw("vehicle_events"),
        encode_raw(contract, "vehicle_events", events),
    )
    return contract, events


def _window(events: list[dict[str, object]]) -> tuple[int, int]:
    start = int(str(events[0]["timestamp"])) // 900_000 * 900_000
    return start, start + 900_000


def test_a_clean_contract_passes_before_anything_is_broken(
    raw_contract: tuple[Contract, list[dict[str, object]]], kafka_bootstrap: str
) -> None:
    contract, events = raw_contract
    report = audit(contract, kafka_bootstrap, audience="confidential")
    assert report["ok"], report["findings"]
    view = next(v for v in report["reconciliation"]["views"] if v["view"] == "availability")
    assert view["gap"] == 0 and view["open"] > 0  # nothing released yet: open, not lost
    # The session broker enforces ACLs; none were created for this contract, so each
    # consumer's read grant and the worker's two group grants are missing (warnings), and
    # nothing is wider than the contract.
    assert report["terms"]["acls"]["enforced"]
    readers = sum(len(c.views) for c in contract.consumers)
    assert codes(report["findings"], "warning")["acl-missing"] == readers
    assert codes(report["findings"], "warning")["acl-worker-group-missing"] == 2  # raw, merge


def test_a_topic_whose_retention_differs_from_the_contract_is_a_violation(
    raw_contract: tuple[Contract, list[dict[str, object]]],
    kafka_bootstrap: str,
    kafka_admin: KafkaAdminClient,
) -> None:
    contract, _ = raw_contract
    topic = contract.topic_raw("trips")
    kafka_admin.alter_configs(
        [ConfigResource(ConfigResourceType.TOPIC, topic, {"retention.ms": str(30 * 86_400_000)})]
    )
    report = audit(contract, kafka_bootstrap)
    assert not report["ok"] and exit_code(report) == 1
    flagged = [f for f in report["findings"] if f["code"] == "topic-config"]
    assert [f["where"] for f in flagged] == [topic]
    assert "retention.ms is 2592000000, the contract says 604800000" in flagged[0]["message"]
    row = next(
        t
        for t in report["terms"]["topics"]
        if t["topic"] == topic and t["config"] == "retention.ms"
    )
    assert row == {
        "topic": topic,
        "config": "retention.ms",
        "contract": "604800000",
        "cluster": "2592000000",
        "ok": False,
    }


def test_a_published_field_the_contract_does_not_allow_is_a_violation(
    raw_contract: tuple[Contract, list[dict[str, object]]],
    kafka_bootstrap: str,
    producer_factory: Callable[..., KafkaProducer],
) -> None:
    contract, events = raw_contract
    window = _window(events)
    topic = contract.topic_public("availability")
    producer = producer_factory(transactional_id=f"forger-{contract.id}")
    producer.init_transactions()
    producer.begin_transaction()
    for key, value in forged_groups(contract, window, CELL):
        producer.send(topic, key=key, value=value, headers=public_headers(contract, window))
    producer.commit_transaction()

    report = audit(contract, kafka_bootstrap)
    assert not report["ok"]
    found = codes(report["findings"])
    assert found["unknown-schema"] == 1  # the wider schema's own id
    assert found["extra-field"] == 2  # extra bytes under the view's id; an extra key field
    wheres = sorted(
        f["where"] for f in report["findings"] if f["code"] in ("unknown-schema", "extra-field")
    )
    assert wheres == [f"{topic}/0@0 value", f"{topic}/0@1 value", f"{topic}/0@2 key"]
    terms = next(v for v in report["terms"]["views"] if v["view"] == "availability")
    assert terms["fields_extra"] == ["vehicle_type"]
    assert terms["records_rejected"] == 3


def test_a_raw_identifier_planted_in_a_header_is_found_and_never_printed(
    raw_contract: tuple[Contract, list[dict[str, object]]],
    kafka_bootstrap: str,
    producer_factory: Callable[..., KafkaProducer],
) -> None:
    contract, events = raw_contract
    window = _window(events)
    vehicle = str(events[7]["vehicle_id"])
    producer = producer_factory()
    topic = contract.topic_public("availability")
    key, value = genuine_group(contract, window, CELL)
    producer.send(topic, key=key, value=value, headers=public_headers(contract, window))
    planted = [*public_headers(contract, window), ("x-debug", f"v={vehicle.upper()}".encode())]
    producer.send(topic, key=key, value=value, headers=planted).get(timeout=30)
    dlq = contract.topic_dlq("vehicle_events")
    producer.send(
        dlq,
        value=b"{}",
        headers=[("respublica.reason", b"MISSING_FIELD"), ("respublica.field", vehicle.encode())],
    )
    producer.flush(timeout=30)

    report = audit(contract, kafka_bootstrap, audience="confidential")
    assert not report["ok"]
    digest = "sha256:" + hashlib.sha256(vehicle.encode()).hexdigest()[:12]
    hits = report["canary"]["listed"]
    assert hits == [
        {"where": f"{topic}/0@1 header x-debug", "identifier": digest},
        {"where": f"{dlq}/0@0 header respublica.field", "identifier": digest},
    ]
    assert codes(report["findings"])["identifier-leak"] == 2
    for fmt in ("md", "json", "html"):
        text = render(report, fmt)
        assert vehicle not in text and vehicle.upper() not in text and vehicle.lower() not in text
    assert digest in json.dumps(report)
    # The public report names the places, not the identifier's fingerprint: a SHA-256 prefix
    # of a short vehicle id is inverted by trying them all.
    public = audit(contract, kafka_bootstrap)
    assert [h["where"] for h in public["canary"]["listed"]] == [h["where"] for h in hits]
    assert codes(public["findings"])["identifier-leak"] == 2
    for fmt in ("md", "json", "html"):
        assert digest not in render(public, fmt) and digest[7:] not in render(public, fmt)


def test_grants_wider_than_the_contract_are_violations(
    raw_contract: tuple[Contract, list[dict[str, object]]], kafka_bootstrap: str
) -> None:
    require_authorizer(kafka_bootstrap)
    contract, _ = raw_contract
    opendata = next(c.principal for c in contract.consumers if len(c.views) == 1)
    wider = [
        AclBinding("User:*", "TOPIC", f"raw.{contract.id}.", "PREFIXED", "READ"),
        AclBinding(
            "User:stranger", "TOPIC", contract.topic_public("availability"), "LITERAL", "WRITE"
        ),
        AclBinding(
            opendata, "TOPIC", contract.topic_public("origin_destination"), "LITERAL", "READ"
        ),
    ]
    with acls.AclAdmin(kafka_bootstrap) as admin:
        admin.create(wider)
        try:
            report = audit(contract, kafka_bootstrap)
        finally:
            admin.delete(wider)
    assert not report["ok"] and exit_code(report) == 1
    flagged = codes(report["findings"])
    assert {k: flagged[k] for k in ("acl-wildcard", "acl-public-writer", "acl-extra-reader")} == {
        "acl-wildcard": len(contract.streams),  # one per raw topic
        "acl-public-writer": 1,
        "acl-extra-reader": 1,
    }
    assert "User:stranger" in render(report, "md")


def test_group_grants_on_the_cluster_reach_the_audit(
    raw_contract: tuple[Contract, list[dict[str, object]]], kafka_bootstrap: str
) -> None:
    """Before: the audit asked the broker for TOPIC ACLs only, so its group checks (another
    principal on the contract's worker groups, the worker beyond its own) never fired."""
    require_authorizer(kafka_bootstrap)
    contract, _ = raw_contract
    c = contract.id
    wider = [
        AclBinding("User:stranger", "GROUP", f"respublica.{c}.raw", "LITERAL", "READ"),
        AclBinding(acls.worker_principal(contract), "GROUP", "respublica.", "PREFIXED", "READ"),
        # a DENY from one host does not take back a grant open to every host
        AclBinding(
            "User:stranger", "GROUP", f"respublica.{c}.raw", "LITERAL", "READ", "DENY", "10.9.9.9"
        ),
    ]
    with acls.AclAdmin(kafka_bootstrap) as admin:
        admin.create(wider)
        try:
            wait_for(lambda: set(wider) <= admin.bindings(), 60, "the grants to be listed")
            report = audit(contract, kafka_bootstrap)
        finally:
            admin.delete(wider)
    flagged = codes(report["findings"])
    assert (flagged.get("acl-group-grant"), flagged.get("acl-worker-group")) == (1, 1), flagged
    groups = report["terms"]["acls"]["groups"]
    assert {
        "principal": "User:stranger",
        "group": f"respublica.{c}.raw",
        "operations": ["READ"],
    } in groups
