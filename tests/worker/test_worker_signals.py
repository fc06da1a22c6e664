"""SIGTERM to a worker that is still starting is a clean stop (exit 0), not a death by signal.

Before: until faust installed its handler, Python's default ended the worker with -15, so a
supervisor or a test stopping a just-restarted worker saw an unclean stop. Synchronised on the
kernel's record of caught signals (``SigCgt`` in ``/proc/<pid>/status``), never on a sleep.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from contracts import examples_dir
from tests.worker.support import wait_for

pytestmark = pytest.mark.unit


def _catches(pid: int, signum: int) -> bool:
    for line in Path(f"/proc/{pid}/status").read_text(encoding="ascii").splitlines():
        if line.startswith("SigCgt:"):
            return bool(int(line.split()[1], 16) >> (signum - 1) & 1)
    return False


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="needs Linux /proc")
def test_sigterm_while_starting_is_a_clean_stop(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RESPUBLICA_", "KAFKA_"))}
    env["RESPUBLICA_MASTER_KEY"] = "00" * 32
    env["TMPDIR"] = str(tmp_path)
    worker = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "broker.cli",
            "worker",
            "--bootstrap",
            "127.0.0.1:9",  # nothing listens: the worker stays in its startup checks
            "--contracts",
            str(examples_dir() / "micromobility.yaml"),
        ],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        wait_for(
            lambda: worker.poll() is None and _catches(worker.pid, signal.SIGTERM),
            30,
            "the starting worker to handle SIGTERM",
        )
        worker.send_signal(signal.SIGTERM)
        assert worker.wait(timeout=30) == 0
    finally:
        if worker.poll() is None:
            worker.kill()
            worker.wait()
