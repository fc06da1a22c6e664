"""``respublica bench``: the policy pipeline against same-client baselines, side by side."""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path
from typing import Any

from broker.cli.contracts import add_allow_outside_refs

VARIANTS = ("b1", "b1a", "b2", "p", "pk", "f", "p2", "pa")


def register(commands: Any) -> None:
    bench = commands.add_parser("bench", help="measure the policy pipeline against baselines")
    bench.add_argument(
        "--contract",
        type=Path,
        default=None,
        help="a copy of a bundled example contract (its views, windows, k, partitions...; "
        "streams with the example's schemas, which the simulators write; default: the "
        "micromobility example)",
    )
    add_allow_outside_refs(bench)
    bench.add_argument(
        "--events",
        type=int,
        default=100_000,
        help="events of the contract's first simulated stream to preload (vehicle events "
        "for micromobility; its other streams come on top; default 100000)",
    )
    bench.add_argument("--partitions", type=int, default=4, help="raw topic partitions")
    bench.add_argument("--rounds", type=int, default=3, help="alternating rounds (medians)")
    bench.add_argument(
        "--variants",
        default="b1,b2,p,f",
        help=f"comma-separated, from {','.join(VARIANTS)} (b1a: b1 consuming with aiokafka as "
        "the worker does; pk: p consuming with kafka-python; p2: two workers of one process; "
        "pa: one worker with --processes auto)",
    )
    bench.add_argument("--json", type=Path, help="also write the results as JSON")
    bench.add_argument(
        "--workdir",
        type=Path,
        default=Path("out/bench"),
        help="logs and scratch files (default out/bench)",
    )
    bench.set_defaults(handler=_bench)


def _bench(args: argparse.Namespace) -> int:
    from broker.bench.harness import BenchOptions, render, run
    from broker.kafka.local import job_cluster

    variants = tuple(v.strip() for v in args.variants.split(",") if v.strip())
    unknown = sorted(set(variants) - set(VARIANTS))
    if unknown:
        print(f"unknown variant(s): {', '.join(unknown)}; choose from {', '.join(VARIANTS)}")
        return 2
    options = BenchOptions(
        args.events,
        args.partitions,
        args.rounds,
        variants,
        args.workdir,
        args.contract,
        args.allow_outside_refs,
    )
    with job_cluster("bench") as (kafka, _external):
        # The harness and its child processes name the cluster by its address and take the
        # credentials from the environment: those of the throw-away broker, when it is one.
        os.environ.update(kafka.environ())
        summary = run(kafka.bootstrap, options)
    print(render(summary))
    if args.json:
        args.json.write_text(json.dumps(summary, indent=2))
    return 0
