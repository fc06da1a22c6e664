"""The ``respublica`` command line: one sub-command per user job.

Each command group lives in its own module and registers itself here; this module only
builds the parser and turns a :class:`RespublicaError` into a clear message and exit code 1.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import Any, NoReturn

from broker.cli import (
    analysts as cli_analysts,
)
from broker.cli import (
    audit as cli_audit,
)
from broker.cli import (
    bench as cli_bench,
)
from broker.cli import (
    contracts as cli_contracts,
)
from broker.cli import (
    demo as cli_demo,
)
from broker.cli import (
    ingest as cli_ingest,
)
from broker.cli import (
    kafka as cli_kafka,
)
from broker.cli import (
    keys as cli_keys,
)
from broker.cli import (
    rejections as cli_rejections,
)
from broker.cli import (
    users as cli_users,
)
from broker.cli import (
    validator as cli_validator,
)
from broker.cli import (
    web as cli_web,
)
from broker.cli import (
    worker as cli_worker,
)
from broker.logs import quiet_client_logs
from contracts.errors import RespublicaError


class _Version(argparse.Action):
    """``--version``: ``respublica <version>`` of the installed distribution, then exit.

    Unlike argparse's ``version`` action, it reads the version only when asked:
    importlib.metadata is slow to import, and every command would pay for it.
    """

    def __init__(
        self,
        option_strings: Sequence[str],
        dest: str = argparse.SUPPRESS,
        default: str = argparse.SUPPRESS,
        help: str | None = None,
    ) -> None:
        super().__init__(option_strings, dest=dest, default=default, nargs=0, help=help)

    def __call__(
        self,
        parser: argparse.ArgumentParser,
        namespace: argparse.Namespace,
        values: Any,
        option_string: str | None = None,
    ) -> NoReturn:
        from importlib.metadata import version

        print(f"respublica {version('respublica')}")
        parser.exit()


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="respublica",
        description="Share general-interest data from private platforms with public "
        "authorities under enforceable contracts, on Apache Kafka.",
    )
    parser.add_argument(
        "--version", action=_Version, help="print the version of respublica and exit"
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    cli_kafka.register(commands)
    cli_bench.register(commands)
    cli_contracts.register(commands)
    cli_users.register(commands)
    cli_worker.register(commands)
    cli_keys.register(commands)
    cli_validator.register(commands)
    cli_ingest.register(commands)
    cli_rejections.register(commands)
    cli_analysts.register(commands)
    cli_audit.register(commands)
    cli_web.register(commands)
    cli_demo.register(commands)
    return parser


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
