"""The metric catalogue: every documented metric exists, and no label can carry a data value."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from pathlib import Path

import pytest

from broker.metrics import METRIC_NAMES, build_metrics
from contracts import examples_dir, load_contracts

pytestmark = pytest.mark.unit
DOC = Path(__file__).resolve().parents[2] / "docs" / "metrics.md"
ALLOWED_LABELS = {"contract", "stream", "view", "reason", "source", "topic", "period", "route",
                  "provider", "beneficiary", "version", "policy_hash", "legal_basis",
                  "status"}


def test_every_documented_metric_is_defined_and_every_defined_one_documented() -> None:
    documented = set(re.findall(r"^\| `(respublica_[a-z_]+)`", DOC.read_text(), re.M))
    assert documented == set(METRIC_NAMES)
    exposed = build_metrics().render().decode()
    for name in METRIC_NAMES:
        assert f"# HELP {name} " in exposed, name


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
