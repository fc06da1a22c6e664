"""Load generator for the HTTP gateway: simulated events in batches, events/s and latency.

    python -m broker.ingest.loadgen --url http://127.0.0.1:8080 --token T --events 200000

Events come from the mobility simulator and are rendered to NDJSON once, before the clock
starts; each batch's event time is stamped at send time (one bytes replace per batch), so
every event is fresh for the gateway's lateness check however long the run takes. Several
requests are in flight at once (``--concurrency``). The report gives accepted events per
second over the whole run and the p50/p99 request latency; no value of an event is printed.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field

import aiohttp

from connectors.simulate import MobilitySimulator, SimOptions, take

STAMP = b"1111111111111"  # a placeholder event time, replaced at send time


@dataclass
class LoadReport:
    """Results of one run."""

    events: int = 0
    accepted: int = 0
    elapsed_s: float = 0.0
    latencies_s: list[float] = field(default_factory=list)
    statuses: Counter[int] = field(default_factory=Counter)
    rejected: Counter[str] = field(default_factory=Counter)

    def percentile(self, q: float) -> float:
        """Request latency quantile ``q`` (0..1), in milliseconds."""
        if len(self.latencies_s) < 2:
            return 1000 * (self.latencies_s[0] if self.latencies_s else 0.0)
        cuts = statistics.quantiles(self.latencies_s, n=100, method="inclusive")
        return 1000 * cuts[min(98, max(0, round(q * 100) - 1))]

    def render(self) -> str:
        """A short text report."""
        rate = self.accepted / self.elapsed_s if self.elapsed_s else 0.0
        return (
            f"{self.events} events in {len(self.latencies_s)} requests, "
            f"{self.elapsed_s:.2f}s: {rate:,.0f} accepted events/s; request latency "
            f"p50 {self.percentile(0.5):.1f} ms, p99 {self.percentile(0.99):.1f} ms; "
            f"HTTP {dict(self.statuses)}; rejected {dict(self.rejected) or 0}"
        )


def render_batches(events: int, batch: int, seed: int = 0) -> list[bytes]:
    """NDJSON bodies of ``batch`` vehicle events each, event times left as a placeholder."""
    sim = MobilitySimulator(SimOptions(seed=seed, size=5000))
    lines = []
    for _, record in take(sim.records(), events, ["vehicle_events"]):
        record["timestamp"] = int(STAMP)
        lines.append(json.dumps(record, separators=(",", ":")).encode())
    return [b"\n".join(lines[i : i + batch]) for i in range(0, len(lines), batch)]


async def run(url: str, token: str, bodies: Sequence[bytes], concurrency: int) -> LoadReport:
    """POST every body, ``concurrency`` at a time; returns the report."""
    report = LoadReport()
    queue: asyncio.Queue[bytes] = asyncio.Queue()
    for body in bodies:
        queue.put_nowait(body)
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/x-ndjson"}
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector) as session:
        started = time.perf_counter()
        await asyncio.gather(
            *(_worker(session, url, headers, queue, report) for _ in range(concurrency))
        )
        report.elapsed_s = time.perf_counter() - started
    return report


async def _worker(
    session: aiohttp.ClientSession,
    url: str,
    headers: dict[str, str],
    queue: asyncio.Queue[bytes],
    report: LoadReport,
) -> None:
    while not queue.empty():
        body = queue.get_nowait()
        stamped = body.replace(STAMP, str(time.time_ns() // 1_000_000 - 1000).encode())
        sent = time.perf_counter()
        async with session.post(url, data=stamped, headers=headers) as response:
            answer = await response.read()
            report.latencies_s.append(time.perf_counter() - sent)
            report.statuses[response.status] += 1
        report.events += body.count(b"\n") + 1
        if response.status == 200:
            parsed = json.loads(answer)
            report.accepted += parsed["accepted"]
            report.rejected.update(r["reason"] for r in parsed["rejected"])


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m broker.ingest.loadgen``."""
    parser = argparse.ArgumentParser(
        prog="python -m broker.ingest.loadgen",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--url", default="http://127.0.0.1:8080", help="gateway base URL")
    parser.add_argument("--token", required=True, help="bearer token of a provider")
    parser.add_argument("--contract", default="lyon-micromobility")
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--batch", type=int, default=500)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument(
        "--seed",
        type=int,
        default=None,
        help="simulator seed (default: from the clock, so reruns are not "
        "rejected as duplicates by a running gateway)",
    )
    args = parser.parse_args(argv)
    seed = args.seed if args.seed is not None else time.time_ns() % 1_000_000_007
    bodies = render_batches(args.events, args.batch, seed)
    endpoint = f"{args.url.rstrip('/')}/v1/contracts/{args.contract}/streams/vehicle_events/events"
    report = asyncio.run(run(endpoint, args.token, bodies, args.concurrency))
    print(report.render())
    return 0 if set(report.statuses) == {200} else 1


if __name__ == "__main__":
    sys.exit(main())
