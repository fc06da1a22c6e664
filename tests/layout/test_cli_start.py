"""``respublica --help`` and ``--version`` stay fast: importing the CLI loads no heavy library.

Each command imports what it needs inside its handler. The few constants the parser shows in
its help (defaults, choices) are copies of their owners' values, checked here to agree. Wall
time is the benchmark's business, not a unit test's.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from importlib.metadata import version

from broker.cli import build_parser

HEAVY = (
    "pydantic",
    "kafka",
    "aiokafka",
    "aiohttp",
    "faust",
    "fastavro",
    "h3",
    "pyarrow",
    "prometheus_client",
    "yaml",
    "cryptography",
    "orjson",
)
COMMANDS = (
    "kafka",
    "bench",
    "contracts",
    "plan",
    "apply",
    "users",
    "worker",
    "keys",
    "validator",
    "gateway",
    "simulate",
    "replay",
    "connect",
    "rejections",
    "subscribe",
    "export",
    "schemas",
    "audit",
    "web",
    "demo",
)


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "broker.cli", *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_importing_the_cli_loads_no_heavy_library() -> None:
    code = "import sys, broker.cli; print(sorted(m for m in sys.modules))"
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    loaded = ast.literal_eval(result.stdout)
    assert "broker.cli" in loaded
    heavy = sorted(m for m in loaded if m.split(".")[0] in HEAVY)
    assert heavy == []


def test_version_prints_the_installed_version() -> None:
    result = _cli("--version")
    assert result.returncode == 0, result.stderr
    assert result.stdout == f"respublica {version('respublica')}\n"


def test_help_lists_every_command() -> None:
    result = _cli("--help")
    assert result.returncode == 0, result.stderr
    listed = {
        line.split()[0]
        for line in result.stdout.splitlines()
        if line.startswith("    ") and not line.startswith("     ")
    }
    assert listed == set(COMMANDS)


def test_the_parser_has_exactly_these_commands() -> None:
    subparsers = next(a for a in build_parser()._actions if a.dest == "command")
    assert subparsers.choices is not None
    assert tuple(subparsers.choices) == COMMANDS


def test_help_time_constants_agree_with_their_owners() -> None:
    from typing import get_args

    from broker.cli import simulate as cli_simulate
    from broker.cli import worker as cli_worker
    from broker.kafka.clients import DEFAULT_LOOP_CLIENT, LoopClient
    from broker.worker import keystore
    from connectors.simulate import SIMULATORS

    assert cli_worker.MASTER_KEY_ENV == keystore.MASTER_KEY_ENV
    assert cli_worker.NEW_MASTER_KEY_ENV == keystore.NEW_MASTER_KEY_ENV
    assert cli_simulate.SIMULATOR_NAMES == tuple(sorted(SIMULATORS))
    assert set(cli_worker.LOOP_CLIENTS) == set(get_args(LoopClient))
    assert cli_worker.LOOP_CLIENTS[0] == DEFAULT_LOOP_CLIENT
