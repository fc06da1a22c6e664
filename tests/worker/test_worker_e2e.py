"""End to end on the real broker: simulated raw events → ``respublica worker`` → public views.

The published releases must equal the batch oracle on the same events, release for release.
``RESPUBLICA_LONG=1`` runs the micromobility stream at 100,000 events (default 30,000).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable

import pytest
from kafka import KafkaProducer

from contracts.model import Contract
from contracts.policy_hash import short_policy_hash
from tests.worker.support import (
    WorkerProcess,
    dumps,
    expected_windows,
    feed,
    metric_value,
    mobility_events,
    read_public,
    rental_events,
    wait_for,
)

pytestmark = pytest.mark.integration

MOBILITY_EVENTS = 100_000 if os.environ.get("RESPUBLICA_LONG") == "1" else 30_000
RENTAL_EVENTS = 6_000


def test_worker_publishes_what_the_oracle_computes(
    contract_factory: Callable[..., Contract],
    worker_factory: Callable[..., WorkerProcess],
    producer_factory: Callable[..., KafkaProducer],
    kafka_bootstrap: str,
) -> None:
    mobility = contract_factory("micromobility")
    rentals = contract_factory("rentals")
    mob_events, str_events = mobility_events(MOBILITY_EVENTS), rental_events(RENTAL_EVENTS)
    expected = {
        (mobility, "availability"): expected_windows(mobility, mob_events, "availability"),
        (mobility, "origin_destination"): expected_windows(
            mobility, mob_events, "origin_destination"
        ),
        (rentals, "nights_by_district"): expected_windows(
            rentals, str_events, "nights_by_district"
        ),
        (rentals, "nights_by_cell"): expected_windows(rentals, str_events, "nights_by_cell"),
    }
    assert all(len(w) >= 3 for w in expected.values()), "too few windows to prove anything"
    producer = producer_factory(linger_ms=20, batch_size=256 * 1024)
    feed(producer, mobility, mob_events)
    feed(producer, rentals, str_events)

    worker = worker_factory([mobility, rentals], "e2e-1")
    started = time.monotonic()
    worker.start()

    def done() -> bool:
        assert worker.alive(), worker.log_tail()
        return all(
            len(read_public(kafka_bootstrap, c, v).windows) >= len(w)
            for (c, v), w in expected.items()
        )

    wait_for(done, 240, "every window of every view", every_s=1.0)
    elapsed = time.monotonic() - started
    print(
        f"\n{len(mob_events['vehicle_events'])} vehicle events + "
        f"{len(mob_events['trips'])} trips + {len(str_events['activity'])} stays "
        f"published in {elapsed:.1f} s (worker start included)"
    )

    for (contract, view), windows in expected.items():
        got = read_public(kafka_bootstrap, contract, view)
        assert got.duplicates == 0
        assert got.windows == windows, f"{view}: {dumps(got.windows)} != {dumps(windows)}"
        headers = got.headers[0]
        assert headers["respublica.contract"] == contract.id.encode()
        assert headers["respublica.contract_version"] == str(contract.version).encode()
        assert headers["respublica.policy_hash"] == short_policy_hash(contract).encode()
        assert headers["respublica.key_ids"].startswith(f"{contract.id}:".encode())
        assert {"respublica.window_start", "respublica.window_end"} <= set(headers)

    text = worker.metrics()
    folded = metric_value(
        text, "respublica_events_folded_total", contract=mobility.id, view="availability"
    )
    assert folded > 0
    assert (
        metric_value(
            text,
            "respublica_view_events_total",
            contract=mobility.id,
            view="availability",
            disposition="folded",
        )
        == folded
    )
    assert (
        metric_value(
            text, "respublica_records_published_total", contract=mobility.id, view="availability"
        )
        > 0
    )
    assert metric_value(
        text, "respublica_windows_released_total", contract=mobility.id, view="availability"
    ) == len(expected[(mobility, "availability")])
    assert worker.terminate() == 0, worker.log_tail()
