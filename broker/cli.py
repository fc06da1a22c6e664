"""The ``respublica`` command line: one sub-command per user job.

Each command group lives in its own module and registers itself here; this module only
builds the parser and turns a :class:`RespublicaError` into a clear message and exit code 1.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

from broker import (
    cli_analysts,
    cli_audit,
    cli_bench,
    cli_contracts,
    cli_demo,
    cli_ingest,
    cli_kafka,
    cli_validator,
    cli_worker,
)
from broker.errors import RespublicaError


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="respublica",
        description="Share general-interest data from private platforms with public "
        "authorities under enforceable contracts, on Apache Kafka.",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    cli_kafka.register(commands)
    cli_bench.register(commands)
    cli_contracts.register(commands)
    cli_worker.register(commands)
    cli_validator.register(commands)
    cli_ingest.register(commands)
    cli_analysts.register(commands)
    cli_audit.register(commands)
    cli_demo.register(commands)
    return parser


def quiet_client_logs() -> None:
    """kafka-python and aiokafka log record keys and values at DEBUG: never let them through."""
    for name in ("kafka", "aiokafka"):
        logging.getLogger(name).setLevel(logging.WARNING)


def main(argv: Sequence[str] | None = None) -> int:
    quiet_client_logs()
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        code: int = args.handler(args)
    except RespublicaError as exc:
        print(f"respublica: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # `respublica plan | head` closed our stdout early: not an error of ours.
        sys.stderr.close()
        return 0
    return code


if __name__ == "__main__":
    sys.exit(main())
