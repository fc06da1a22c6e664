"""Micro-benchmark of the policy core: ``python -m broker.bench.policies --events N``.

The micromobility availability view (filter + H3 res 8 + pseudonymise + count/distinct +
k-suppression) over seeded synthetic records, no Kafka. This entry point is the one place in
``policies/`` allowed to read a clock and use ``random`` (to make the synthetic load).
"""

from __future__ import annotations

import argparse
import itertools
import random
import time
import tracemalloc
from collections.abc import Iterator

from policies.base import END_OF_STREAM, Record
from policies.compile import compile_spec
from policies.generalise import Territory
from policies.pseudonymise import KeyRing
from policies.spec import MeasureSpec, ViewSpec, h3_dimension

T0 = 1_767_225_600_000  # 2026-01-01T00:00:00Z
LYON = (4.77, 45.70, 4.92, 45.81)


def availability_spec() -> ViewSpec:
    """The ``availability`` view of ``contracts/examples/micromobility.yaml``, by hand."""
    territory = Territory.from_bbox(LYON)
    return ViewSpec(
        contract="lyon-micromobility",
        view="availability",
        time_field="timestamp",
        subject_field="vehicle_id",
        window_ms=900_000,
        time_bucket_ms=900_000,
        lateness_ms=300_000,
        rotation_ms=86_400_000,
        k=10,
        dimensions=(h3_dimension("cell", "lat", "lon", 8, territory),),
        measures=(MeasureSpec("events", "count"), MeasureSpec("vehicles", "distinct_subjects")),
        filter_field="event_type",
        filter_values=("available",),
    )


def synthetic(
    n: int, *, vehicles: int = 20_000, seed: int = 7, rate_per_s: int = 50
) -> Iterator[Record]:
    """Vehicle events in time order (with small jitter), ``rate_per_s`` events per second."""
    rng = random.Random(seed)  # noqa: S311 - synthetic load, not secrets
    types = ("available", "available", "available", "trip_start", "trip_end", "reserved")
    west, south, east, north = LYON
    for i in range(n):
        yield {
            "event_id": f"e{i}",
            "vehicle_id": f"veh-{rng.randrange(vehicles):06d}",
            "event_type": types[rng.randrange(len(types))],
            "timestamp": T0 + i * 1000 // rate_per_s - rng.randrange(60_000),
            "lat": south + (north - south) * rng.random(),
            "lon": west + (east - west) * rng.random(),
            "battery": rng.randrange(100),
        }


def run(
    n: int, partitions: int = 1, batch: int = 5_000, *, traced: bool = False
) -> dict[str, float]:
    """Process ``n`` events; time only the policy calls (records are generated per batch).

    With ``traced`` the run happens under ``tracemalloc`` (several times slower) and reports
    the peak traced memory; untraced runs report throughput.
    """
    view = compile_spec(availability_spec(), keyring=KeyRing(token_bytes=lambda k: bytes(k)))
    sources = [f"p{i}" for i in range(partitions)]
    aggs = [view.partition_state(s) for s in sources]
    merger = view.merger(sources)
    releases = max_open = 0
    elapsed = 0.0
    events = synthetic(n)
    if traced:
        tracemalloc.start()
    for lo in range(0, n, batch):
        chunk = list(itertools.islice(events, batch))
        split = [
            [(lo + i, r) for i, r in enumerate(chunk) if i % partitions == p]
            for p in range(partitions)
        ]
        began = time.perf_counter()
        for agg, part in zip(aggs, split, strict=True):
            agg.process(part)
            merger.merge(agg.drain_partials())
            merger.observe_watermark(agg.source, agg.watermark)
            max_open = max(max_open, agg.open_partials)
        releases += len(merger.release_ready())
        elapsed += time.perf_counter() - began
    for agg in aggs:
        merger.observe_watermark(agg.source, END_OF_STREAM)
    releases += len(merger.release_ready())
    peak = tracemalloc.get_traced_memory()[1] if traced else 0
    tracemalloc.stop()
    return {
        "events": n,
        "events_per_s": n / elapsed,
        "seconds": elapsed,
        "peak_mib": peak / 2**20,
        "releases": releases,
        "max_open_partials": max_open,
    }


def main(argv: list[str] | None = None) -> None:
    """Command-line entry: prints one line per size."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument(
        "--events",
        type=int,
        action="append",
        help="number of events (repeatable; default 250000 and 2000000)",
    )
    parser.add_argument("--partitions", type=int, default=1)
    parser.add_argument(
        "--memory", action="store_true", help="also run once under tracemalloc and report the peak"
    )
    args = parser.parse_args(argv)
    for n in args.events or [250_000, 2_000_000]:
        fast = run(n, args.partitions)
        memory = run(n, args.partitions, traced=True) if args.memory else None
        peak = f"{memory['peak_mib']:.1f}" if memory else "n/a (use --memory)"
        print(  # noqa: T201 - this is a CLI
            f"events={n:,} partitions={args.partitions} "
            f"events/s={fast['events_per_s']:,.0f} policy_seconds={fast['seconds']:.2f} "
            f"peak_traced_mib={peak} releases={fast['releases']:.0f} "
            f"max_open_partials={fast['max_open_partials']:.0f}"
        )


if __name__ == "__main__":
    main()
