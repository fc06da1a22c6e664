"""``respublica validator`` as a process: it validates, and SIGTERM stops it cleanly."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from collections.abc import Callable

import pytest
from kafka import KafkaConsumer, KafkaProducer

from contracts import Contract
from tests.connectors.conftest import vehicle_event
from tests.connectors.support import drain, produce

pytestmark = pytest.mark.integration


def test_sigterm_finishes_the_batch_commits_and_exits_zero(
    applied: Contract,
    producer_factory: Callable[..., KafkaProducer],
    consumer_factory: Callable[..., KafkaConsumer],
    kafka_bootstrap: str,
) -> None:
    now_ms = time.time_ns() // 1_000_000  # the CLI judges lateness by the wall clock
    records = [vehicle_event(i, now_ms=now_ms) for i in range(500)]
    produce(
        producer_factory(),
        applied.topic_ingest("vehicle_events"),
        [(r["vehicle_id"].encode(), json.dumps(r).encode()) for r in records]
        + [(b"k", b"not json")],
    )
    assert applied.source is not None
    command = [
        sys.executable,
        "-m",
        "broker.cli",
        "validator",
        "--contracts",
        str(applied.source),
        "--bootstrap",
        kafka_bootstrap,
        "--group",
        f"cli-{applied.id}",
    ]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        raw = consumer_factory(applied.topic_raw("vehicle_events"))
        dlq = consumer_factory(applied.topic_dlq("vehicle_events"))
        got = drain(raw, len(records), 90, lambda: process.poll() is None)
        rejected = drain(dlq, 1, 30, lambda: process.poll() is None)
        process.send_signal(signal.SIGTERM)
        out, err = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    assert len(got) == len(records) and len(rejected) == 1
    assert process.returncode == 0, err
    assert f"Stopped: {len(records) + 1} consumed, {len(records)} accepted, 1 rejected." in out
    assert "not json" not in err and "veh-" not in err  # logs carry counts, not payloads
