"""``respublica demo``: the whole story end to end (see ``broker/demo/run.py``)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any


def register(commands: Any) -> None:
    demo = commands.add_parser("demo", help="run the whole story end to end, files in out/")
    demo.add_argument("--out", type=Path, default=Path("out"), help="output folder (out)")
    demo.add_argument(
        "--bad-share",
        type=float,
        default=0.03,
        help="share of bad records mixed into each stream (0.03)",
    )
    demo.add_argument(
        "--keep",
        action="store_true",
        help="leave the broker (in OUT/demo/kafka), the worker and a gateway running, and "
        "print the commands to try next; stop them with --stop",
    )
    demo.add_argument(
        "--stop",
        action="store_true",
        help="stop what `respublica demo --keep --out OUT` left running, and exit",
    )
    demo.set_defaults(handler=_demo)


def _demo(args: argparse.Namespace) -> int:
    if args.stop:
        from broker.demo.keep import stop_kept

        print("\n".join(stop_kept(args.out)))
        return 0
    from broker.demo.run import run_demo  # local: keeps `respublica --help` fast

    return run_demo(args.out, args.bad_share, keep=args.keep)
