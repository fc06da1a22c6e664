"""The metric catalogue: every documented metric exists, and no label can carry a data value."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from pathlib import Path

import pytest
from prometheus_client import generate_latest

from broker.metrics import METRIC_NAMES, build_metrics
from broker.worker.metrics import WorkerMetrics
from broker.worker.supervise import Supervisor
from contracts import examples_dir, load_contracts

pytestmark = pytest.mark.unit
DOC = Path(__file__).resolve().parents[2] / "docs" / "metrics.md"
ALLOWED_LABELS = {
    "contract",
    "stream",
    "view",
    "reason",
    "source",
    "topic",
    "period",
    "route",
    "provider",
    "beneficiary",
    "version",
    "policy_hash",
    "legal_basis",
    "status",
}


OPERATIONAL = "## Operational metrics of the worker"


def _documented(text: str) -> set[str]:
    return set(re.findall(r"^\| `(respublica_[a-z_]+)`", text, re.M))


def test_every_documented_metric_is_defined_and_every_defined_one_documented() -> None:
    catalogue, _, _ = DOC.read_text().partition(OPERATIONAL)
    assert _documented(catalogue) == set(METRIC_NAMES)
    exposed = build_metrics().render().decode()
    for name in METRIC_NAMES:
        assert f"# HELP {name} " in exposed, name


def test_the_workers_own_metrics_are_documented_as_operational() -> None:
    _, found, operational = DOC.read_text().partition(OPERATIONAL)
    assert found
    exposed = WorkerMetrics().exposition().decode()
    # --processes N: the supervisor's own families, served by the parent beside the children's.
    exposed += generate_latest(Supervisor(lambda i, p: ["true"], 1).registry).decode()
    own = set(re.findall(r"^# HELP (respublica_\S+)", exposed, re.M)) - set(METRIC_NAMES)
    own -= {n for n in own if n.endswith("_created")}
    assert _documented(operational) == own


def test_labels_are_only_the_allowed_ones() -> None:
    metrics = build_metrics()
    for collector in metrics.registry.collect():
        for sample in collector.samples:
            assert set(sample.labels) <= ALLOWED_LABELS | {"le"}, sample.name
    for family in vars(metrics).values():
        names = getattr(family, "_labelnames", ())
        assert set(names) <= ALLOWED_LABELS


def test_contract_info_and_expiry() -> None:
    now = datetime(2026, 11, 26, tzinfo=UTC)
    contract = load_contracts([examples_dir() / "micromobility.yaml"], now=now)[0]
    metrics = build_metrics()
    metrics.describe_contract(contract, now)
    text = metrics.render().decode()
    assert 'respublica_contract_info{beneficiary="metropole-lyon"' in text
    expiry = metrics.days_to_expiry.labels(contract=contract.id)._value.get()
    assert expiry == pytest.approx((contract.validity.end - now).total_seconds() / 86400, 1e-3)
