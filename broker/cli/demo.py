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
    demo.set_defaults(handler=_demo)


def _demo(args: argparse.Namespace) -> int:
    from broker.demo.run import run_demo  # local: keeps `respublica --help` fast

    return run_demo(args.out, args.bad_share)
