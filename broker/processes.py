"""Measuring a variant's process from outside: CPU seconds, peak RSS, Prometheus samples."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import urllib.request
from pathlib import Path

from contracts.errors import RespublicaError

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


class BenchError(RespublicaError):
    """A variant failed, timed out, or produced a wrong answer."""


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a live process (``/proc/<pid>/stat``)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def peak_rss_mb(pid: int) -> float:
    """High-water mark of the resident set (``VmHWM``), in MiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0


def scrape(port: int) -> str:
    """A worker's ``/metrics`` text ("" while it does not answer)."""
    try:
        with urllib.request.urlopen(
            f"http://127.0.0.1:{port}/metrics",  # noqa: S310
            timeout=2,
        ) as response:
            return str(response.read().decode())
    except OSError:
        return ""


def metric_sum(text: str, name: str, **labels: str) -> float:
    """Sum of the samples of ``name`` whose labels include ``labels``."""
    total = 0.0
    wanted = [f'{k}="{v}"' for k, v in labels.items()]
    for line in text.splitlines():
        if line.startswith((name + "{", name + " ")) and all(w in line for w in wanted):
            total += float(line.rsplit(" ", 1)[1])
    return total


def histogram_quantile(texts: list[str], name: str, q: float, **labels: str) -> float:
    """Prometheus-style quantile over the summed ``_bucket`` samples of several processes
    (only the samples whose labels include ``labels``)."""
    wanted = [f'{k}="{v}"' for k, v in labels.items()]
    buckets: dict[float, float] = {}
    for text in texts:
        for line in text.splitlines():
            if line.startswith(name + "_bucket{") and all(w in line for w in wanted):
                le = line.split('le="')[1].split('"')[0]
                bound = float("inf") if le == "+Inf" else float(le)
                buckets[bound] = buckets.get(bound, 0.0) + float(line.rsplit(" ", 1)[1])
    cumulative = sorted(buckets.items())
    total = cumulative[-1][1] if cumulative else 0.0
    rank, lower, below = q * total, 0.0, 0.0
    for bound, count in cumulative:
        if count >= rank and total:
            if bound == float("inf"):
                return lower
            share = (rank - below) / (count - below) if count > below else 1.0
            return lower + (bound - lower) * share
        lower, below = bound, count
    return lower


class Child:
    """A variant running as its own process, with its output in a log file."""

    def __init__(self, args: list[str], log: Path, env: dict[str, str] | None = None) -> None:
        self.log = log
        with log.open("ab") as out:
            self.proc = subprocess.Popen(  # noqa: S603
                [sys.executable, *args],
                stdout=out,
                stderr=subprocess.STDOUT,
                env=dict(os.environ, PYTHONUNBUFFERED="1", **(env or {})),
            )

    @property
    def pid(self) -> int:
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc.poll() is None

    def check_alive(self) -> None:
        if not self.alive():
            tail = self.log.read_text(errors="replace")[-2000:]
            msg = f"a bench process exited with code {self.proc.returncode}:\n{tail}"
            raise BenchError(msg)

    def stop(self, timeout_s: float = 30.0) -> None:
        if self.alive():
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
