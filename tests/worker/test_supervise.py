"""``respublica worker --processes N``: the supervisor, with stand-in children (no Kafka).

What is tested here is supervision: one port for N children, restart after a SIGKILL, a clean
stop on SIGTERM, the exit codes, no child outliving its parent, every option reaching the
children. ``test_worker_processes.py`` runs the real worker with two processes on the broker.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from broker.cli import build_parser
from broker.cli.worker import child_command
from broker.kafka.local import free_port
from broker.processes import metric_sum
from broker.worker.supervise import (
    ChildHealth,
    ExitCode,
    available_cores,
    cgroup_cpu_quota,
    combine_children,
    merge_families,
)
from tests.worker.support import ROOT, wait_for


def _worker_parser() -> argparse.ArgumentParser:
    parser = build_parser()
    commands = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return commands.choices["worker"]


# Options the parent replaces for each child; every other option must reach it unchanged.
REPLACED = {"processes", "worker_id", "web_socket", "parent_pid", "web_port", "web_host"}


def test_child_command_forwards_every_option_of_the_parent(tmp_path: Path) -> None:
    parent = build_parser().parse_args(
        ["worker", "--contracts", "a.yaml", "--contracts", "dir", "--allow-outside-refs"]
        + ["--worker-id", "w", "--bootstrap", "k:9093", "--kafka-config", "k.yaml"]
        + ["--web-port", "7000", "--web-host", "10.0.0.1", "--master-key-file", "m.key"]
        + ["--new-master-key-file", "n.key", "--group", "respublica.g"]
        + ["--checkpoint-interval", "0.25", "--log-level", "debug", "--log-format", "json"]
        + ["--processes", "3", "--consumer", "kafka-python"]
    )
    argv = child_command(parent, "w.2", tmp_path / "2.sock", 4321)
    assert argv[:3] == [sys.executable, "-m", "broker.cli"]
    child = build_parser().parse_args(argv[3:])
    dests = {a.dest for a in _worker_parser()._actions if a.dest != "help"}
    for dest in dests - REPLACED:
        assert getattr(child, dest) == getattr(parent, dest), dest
    assert (child.processes, child.worker_id, child.parent_pid) == (1, "w.2", 4321)
    assert child.web_socket == tmp_path / "2.sock"
    assert child.web_port == 0  # its web server is the socket only


def test_processes_is_auto_or_a_count() -> None:
    parser = build_parser()
    assert parser.parse_args(["worker"]).processes == "auto"
    assert parser.parse_args(["worker", "--processes", "3"]).processes == 3
    for bad in ("0", "-1", "two"):
        with pytest.raises(SystemExit):
            parser.parse_args(["worker", "--processes", bad])


def test_auto_is_the_affinity_capped_by_a_cgroup_quota(tmp_path: Path) -> None:
    assert 1 <= available_cores() <= len(os.sched_getaffinity(0))
    (tmp_path / "cpu.max").write_text("150000 100000\n")
    assert cgroup_cpu_quota(tmp_path) == 1.5
    (tmp_path / "cpu.max").write_text("max 100000\n")
    assert cgroup_cpu_quota(tmp_path) is None
    (tmp_path / "cpu.max").unlink()
    (tmp_path / "cpu").mkdir()
    (tmp_path / "cpu" / "cpu.cfs_quota_us").write_text("400000\n")
    (tmp_path / "cpu" / "cpu.cfs_period_us").write_text("100000\n")
    assert cgroup_cpu_quota(tmp_path) == 4.0
    (tmp_path / "cpu" / "cpu.cfs_quota_us").write_text("-1\n")
    assert cgroup_cpu_quota(tmp_path) is None


def test_health_is_ok_only_when_every_child_is() -> None:
    ok = ChildHealth(0, 10, "ok", "reachable")
    assert combine_children([ok, ChildHealth(1, 11, "ok", "reachable")], started=True).ok
    down = ChildHealth(1, None, "down", reason="restarting after exit code -9")
    health = combine_children([ok, down], started=True)
    assert (health.status, health.reason) == (
        "degraded",
        "process 1: restarting after exit code -9",
    )
    assert combine_children([ok, down], started=False).status == "starting"
    lost = ChildHealth(1, 11, "degraded", "unreachable", "respublica-raw lost Kafka")
    health = combine_children([ok, lost], started=True)
    assert (health.status, health.kafka) == ("degraded", "unreachable")
    assert health.details["processes"]["1"] == {"status": "degraded", "pid": 11}


def test_merged_metrics_label_every_sample_with_its_process() -> None:
    text = '# TYPE x_total counter\nx_total{c="a"} 2.0\n# TYPE g gauge\ng 1.0\n'
    families = {f.name: f for f in merge_families(iter([(0, text), (1, text)]))}
    assert [s.labels for s in families["x"].samples] == [
        {"c": "a", "process": "0"},
        {"c": "a", "process": "1"},
    ]
    assert [s.value for s in families["g"].samples] == [1.0, 1.0]


# -- a supervisor process with stand-in children -----------------------------------------------


class Parent:
    """``python -m tests.worker.supervise_stub parent``, with its port."""

    def __init__(self, tmp_path: Path, modes: str, *extra: str) -> None:
        self.port = free_port()
        self.log = tmp_path / "parent.log"
        args = ["--port", str(self.port), "--modes", modes, *extra]
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "tests.worker.supervise_stub", "parent", *args],
                cwd=ROOT,
                env=dict(os.environ, PYTHONPATH=str(ROOT)),
                stdout=out,
                stderr=subprocess.STDOUT,
            )

    def get(self, path: str) -> tuple[int, bytes]:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}{path}", timeout=5) as r:
                return int(r.status), r.read()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read()

    def health(self) -> dict[str, Any]:
        try:
            status, body = self.get("/healthz")
        except OSError:
            return {"status": "no answer"}
        return {**json.loads(body), "http": status}

    def pids(self) -> list[int]:
        processes = self.health().get("details", {}).get("processes", {})
        return [p["pid"] for _, p in sorted(processes.items()) if p["pid"] is not None]

    def wait_ok(self, what: str) -> None:
        def ok() -> bool:
            assert self.proc.poll() is None, self.log.read_text()
            return self.health().get("http") == 200

        wait_for(ok, 60, what, every_s=0.2)

    def stop(self, sig: int = signal.SIGTERM) -> int:
        self.proc.send_signal(sig)
        return self.proc.wait(timeout=60)


@pytest.fixture
def parents(tmp_path: Path) -> Iterator[list[Parent]]:
    started: list[Parent] = []
    yield started
    for parent in started:
        if parent.proc.poll() is None:
            parent.proc.kill()
            parent.proc.wait()


def _gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    # A zombie still answers kill(0) until its parent reaps it.
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"


def test_one_port_serves_every_child_and_a_killed_child_comes_back(
    tmp_path: Path, parents: list[Parent]
) -> None:
    parent = Parent(tmp_path, "ok,ok")
    parents.append(parent)
    parent.wait_ok("both children healthy")
    health = parent.health()
    assert set(health["details"]["processes"]) == {"0", "1"}
    first = parent.pids()
    assert len(first) == 2 and len(set(first)) == 2
    status, body = parent.get("/metrics")
    text = body.decode()
    assert status == 200
    assert metric_sum(text, "respublica_stub_events_total", process="0") == 5
    assert metric_sum(text, "respublica_stub_events_total", process="1") == 5
    assert metric_sum(text, "respublica_worker_processes") == 2
    assert text.count("# TYPE respublica_stub_held gauge") == 1  # one family, two samples

    os.kill(first[0], signal.SIGKILL)
    wait_for(
        lambda: parent.health()["details"]["processes"]["0"]["status"] == "down",
        30,
        "the parent to see child 0 down",
        every_s=0.05,
    )
    assert parent.get("/healthz")[0] == 503
    parent.wait_ok("child 0 restarted and healthy")
    second = parent.pids()
    assert second[0] != first[0] and second[1] == first[1]
    text = parent.get("/metrics")[1].decode()
    assert metric_sum(text, "respublica_worker_process_restarts_total", process="0") == 1
    assert metric_sum(text, "respublica_worker_process_restarts_total", process="1") == 0
    assert parent.get("/livez")[0] == 200

    assert parent.stop() == ExitCode.STOPPED
    wait_for(lambda: all(_gone(pid) for pid in second), 10, "every child gone")


def test_sigint_stops_every_child_too(tmp_path: Path, parents: list[Parent]) -> None:
    parent = Parent(tmp_path, "ok,ok,ok")
    parents.append(parent)
    parent.wait_ok("three children healthy")
    pids = parent.pids()
    assert parent.stop(signal.SIGINT) == ExitCode.STOPPED
    assert all(_gone(pid) for pid in pids)


def test_children_that_never_start_make_it_give_up(tmp_path: Path, parents: list[Parent]) -> None:
    parent = Parent(tmp_path, "fail,fail", "--restart-s", "0.05")
    parents.append(parent)
    assert parent.proc.wait(timeout=60) == ExitCode.FAILED
    assert "giving up" in parent.log.read_text()


def test_a_child_that_ignores_sigterm_is_killed_and_the_exit_code_says_so(
    tmp_path: Path, parents: list[Parent]
) -> None:
    parent = Parent(tmp_path, "ok,stubborn", "--stop-timeout-s", "1")
    parents.append(parent)
    parent.wait_ok("both children healthy")
    pids = parent.pids()
    assert parent.stop() == ExitCode.UNCLEAN_STOP
    assert all(_gone(pid) for pid in pids)
    assert "did not stop in time" in parent.log.read_text()


def test_a_sigkilled_supervisor_leaves_no_child_behind(
    tmp_path: Path, parents: list[Parent]
) -> None:
    parent = Parent(tmp_path, "ok,stubborn")
    parents.append(parent)
    parent.wait_ok("both children healthy")
    pids = parent.pids()
    parent.stop(signal.SIGKILL)
    wait_for(lambda: all(_gone(pid) for pid in pids), 10, "the children to die with the parent")
