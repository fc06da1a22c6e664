"""One large request against a running gateway: its peak memory and ``/healthz`` meanwhile.

    python -m broker.ingest.pressure --url http://127.0.0.1:8080 --token T --pid PID \\
        --kind json --mib 16

Sends one body of ``--mib`` MiB of tiny items (``{}``) as a JSON array, NDJSON, gzip-encoded
NDJSON (``--mib`` is then the decompressed size) or a gzip bomb (1 GiB of zeros), while
another task polls ``GET /healthz`` back to back and a thread samples the gateway process's
resident memory (``/proc/PID/status``, Linux) every 2 ms. The report gives the POST's status
and time, the peak RSS above the idle RSS measured just before, and the ``/healthz`` latency
p50/p99/max. A measurement tool for operators (docs/operators.md), not a test: it asserts
nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import gzip
import statistics
import sys
import threading
import time
import zlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp

KINDS = ("json", "ndjson", "gzip", "bomb")
MIB = 1024 * 1024


@dataclass
class PressureReport:
    """What one run saw."""

    kind: str
    body_bytes: int
    status: int = 0
    post_s: float = 0.0
    idle_rss_mb: float = 0.0
    peak_rss_mb: float = 0.0
    health_s: list[float] = field(default_factory=list)
    health_statuses: set[int] = field(default_factory=set)

    def render(self) -> str:
        """One line of text."""
        cuts = sorted(self.health_s) or [0.0]
        p50 = statistics.median(cuts) * 1000
        p99 = cuts[min(len(cuts) - 1, int(0.99 * len(cuts)))] * 1000
        return (
            f"{self.kind}: {self.body_bytes / MIB:.1f} MiB sent, HTTP {self.status} in "
            f"{self.post_s:.2f}s; gateway RSS idle {self.idle_rss_mb:.0f} MB, peak "
            f"{self.peak_rss_mb:.0f} MB (+{self.peak_rss_mb - self.idle_rss_mb:.0f} MB); "
            f"/healthz {len(self.health_s)} probes, p50 {p50:.1f} ms, p99 {p99:.1f} ms, "
            f"max {cuts[-1] * 1000:.1f} ms, statuses {sorted(self.health_statuses)}"
        )


def make_body(kind: str, mib: int) -> tuple[bytes, dict[str, str]]:
    """The body and its content headers."""
    size = mib * MIB
    if kind == "json":
        count = (size - 2) // 3
        return b"[" + b",".join([b"{}"] * count) + b"]", {"Content-Type": "application/json"}
    ndjson = b"{}\n" * (size // 3)
    if kind == "ndjson":
        return ndjson, {"Content-Type": "application/x-ndjson"}
    headers = {"Content-Type": "application/x-ndjson", "Content-Encoding": "gzip"}
    if kind == "gzip":
        return gzip.compress(ndjson, compresslevel=6), headers
    packer = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    zeros = bytes(MIB)
    bomb = b"".join(packer.compress(zeros) for _ in range(1024)) + packer.flush()
    return bomb, headers


def rss_mb(pid: int) -> float:
    """Resident set size of a process, in MB (Linux ``/proc``)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


class RssSampler(threading.Thread):
    """Samples a process's RSS until stopped and keeps the peak."""

    def __init__(self, pid: int) -> None:
        super().__init__(daemon=True)
        self.pid, self.peak = pid, 0.0
        self.done = threading.Event()

    def run(self) -> None:
        while not self.done.is_set():
            self.peak = max(self.peak, rss_mb(self.pid))
            self.done.wait(0.002)


async def run(url: str, token: str, pid: int, kind: str, mib: int, stream: str) -> PressureReport:
    """POST one body while polling ``/healthz``; returns the report."""
    body, headers = make_body(kind, mib)
    report = PressureReport(kind, len(body), idle_rss_mb=rss_mb(pid))
    sampler = RssSampler(pid)
    sampler.start()
    base = url.rstrip("/")
    endpoint = f"{base}/v1/contracts/lyon-micromobility/streams/{stream}/events"
    posted = asyncio.Event()
    async with aiohttp.ClientSession() as session:

        async def post() -> None:
            started = time.perf_counter()
            try:
                async with session.post(
                    endpoint, data=body, headers={**headers, "Authorization": f"Bearer {token}"}
                ) as response:
                    await response.read()
                    report.status = response.status
            except aiohttp.ClientError as exc:
                print(f"POST ended with {type(exc).__name__}", file=sys.stderr)
            report.post_s = time.perf_counter() - started
            posted.set()

        async def probe() -> None:
            while not posted.is_set():
                sent = time.perf_counter()
                async with session.get(f"{base}/healthz") as response:
                    await response.read()
                    report.health_statuses.add(response.status)
                report.health_s.append(time.perf_counter() - sent)
                await asyncio.sleep(0.005)

        await asyncio.gather(post(), probe())
    sampler.done.set()
    sampler.join()
    report.peak_rss_mb = sampler.peak
    return report


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m broker.ingest.pressure``."""
    parser = argparse.ArgumentParser(
        prog="python -m broker.ingest.pressure",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--url", default="http://127.0.0.1:8080", help="gateway base URL")
    parser.add_argument("--token", required=True, help="bearer token of a provider")
    parser.add_argument("--pid", type=int, required=True, help="process id of the gateway")
    parser.add_argument("--kind", choices=KINDS, action="append", help="body kind (repeatable)")
    parser.add_argument("--mib", type=int, default=16, help="body size in MiB (16)")
    parser.add_argument("--stream", default="vehicle_events", help="stream to post to")
    args = parser.parse_args(argv)
    for kind in args.kind or KINDS:
        report = asyncio.run(run(args.url, args.token, args.pid, kind, args.mib, args.stream))
        print(report.render())
    return 0


if __name__ == "__main__":
    sys.exit(main())
