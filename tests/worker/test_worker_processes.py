"""``respublica worker --processes 2`` on the real broker: a SIGKILLed child changes nothing.

The pattern of ``test_worker_crash.py`` (input paced on the published output, so the kills land
mid-stream), with one command running two processes: each child is SIGKILLed once while it
owns raw partitions and a view, the supervisor restarts it, and the releases still equal the
batch oracle with no duplicate. The supervision itself (backoff, exit codes, a parent killed)
is tested with stand-in children in ``test_supervise.py``.
"""

from __future__ import annotations

import json
import os
import signal
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path

import pytest
from kafka import KafkaProducer

from broker.kafka.local import free_port
from contracts.model import Contract
from tests.worker.support import (
    WorkerProcess,
    metric_value,
    mobility_events,
    unique_contract,
    wait_for,
)
from tests.worker.test_worker_crash import CHUNKS, VEHICLE_EVENTS, PacedRun, start_healthy

pytestmark = pytest.mark.integration


def child_pids(worker: WorkerProcess) -> dict[str, int | None]:
    """process index → pid, from the parent's ``/healthz``."""
    url = f"http://127.0.0.1:{worker.port}/healthz"
    try:
        with urllib.request.urlopen(url, timeout=5) as response:  # noqa: S310
            body = json.loads(response.read())
    except urllib.error.HTTPError as exc:
        body = json.loads(exc.read())
    return {i: p["pid"] for i, p in body["details"]["processes"].items()}


def holds_work(worker: WorkerProcess, process: str) -> bool:
    """The child holds raw partitions and a view (so killing it exercises both stages)."""
    text = worker.metrics()
    raw = metric_value(text, "respublica_worker_assignment", stage="raw", process=process)
    views = metric_value(text, "respublica_worker_assignment", stage="merge", process=process)
    return raw > 0 and views > 0


def _gone(pid: int) -> bool:
    return not Path(f"/proc/{pid}").exists() or " Z " in Path(f"/proc/{pid}/stat").read_text()


def test_sigkill_of_each_child_of_two_changes_nothing(
    contract_factory: Callable[..., Contract],
    worker_factory: Callable[..., WorkerProcess],
    producer_factory: Callable[..., KafkaProducer],
    kafka_bootstrap: str,
) -> None:
    contract = contract_factory("micromobility")
    run = PacedRun(
        kafka_bootstrap,
        producer_factory(linger_ms=20),
        contract,
        mobility_events(VEHICLE_EVENTS, seed=17),
    )
    worker = worker_factory([contract], "pair", ["--processes", "2"])
    start_healthy(worker)
    wait_for(
        lambda: holds_work(worker, "0") and holds_work(worker, "1"),
        90,
        "both processes to hold raw partitions and a view",
    )
    kills = [(0.25, "0"), (0.55, "1")]
    killed: list[int] = []
    for index in range(CHUNKS):
        run.produce(index, [worker])
        while kills and run.progress() >= kills[0][0]:
            _, process = kills.pop(0)
            pid = child_pids(worker)[process]
            assert pid is not None
            os.kill(pid, signal.SIGKILL)  # no checkpoint, no commit, transaction left open
            killed.append(pid)

            def restarted(process: str = process, pid: int = pid) -> bool:
                assert worker.alive(), worker.log_tail()
                return child_pids(worker)[process] not in (None, pid) and worker.healthy()

            wait_for(restarted, 120, f"process {process} to be restarted and healthy")
    run.finish([worker])
    assert not kills, "the run ended before every kill"
    run.check()
    text = worker.metrics()
    for process in ("0", "1"):
        restarts = metric_value(text, "respublica_worker_process_restarts_total", process=process)
        assert restarts == 1, (process, restarts)
    survivors = [p for p in child_pids(worker).values() if p is not None]
    assert worker.terminate() == 0, worker.log_tail()
    assert all(_gone(pid) for pid in survivors + killed)


def test_a_startup_error_is_one_line_and_exit_1_before_any_child(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    contract = unique_contract(tmp_path, "micromobility")  # its topics were never applied
    assert contract.source is not None
    worker = WorkerProcess(
        kafka_bootstrap,
        [contract.source],
        "no-topics",
        "g",
        tmp_path,
        free_port(),
        ["--processes", "2"],
    )
    worker.start()
    assert worker.proc is not None
    assert worker.proc.wait(timeout=120) == 1
    log = worker.log_tail()
    assert "missing" in log and "respublica apply" in log
    assert "worker process" not in log  # no child was started
