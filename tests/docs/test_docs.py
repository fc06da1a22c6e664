"""Every command block of README.md, docs/operators.md and docs/analysts.md runs, with bash, as
a reader pastes it, against a live stack: ``respublica demo --keep`` on its own local broker
(TLS + SCRAM, the example contracts applied, a small simulated day released, the worker and a
wall-clock gateway left running, the analyst ``lyon-analysts`` with credentials).

One shell session per page: the blocks run in page order in a work folder of their own, and
the variables a block sets are there for the next (``NOW``, ``TOKEN``), as in a terminal.
Each block runs under ``set -eo pipefail``; a ``console`` block's shown output is compared
with what its commands print. The docs' placeholders for what only a real deployment has (its
host name, a token, the default ports) are replaced by the stack's (``substitutions``), and
the files they name (``tokens.yaml``, ``trips.ndjson``, the analyst's client config) are put
in the work folder first (``workdir``). A command block the test did not run fails the test
unless a ``<!-- docs-test: skip — why -->`` marker says why (``tests/docs/blocks.py``).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import pytest
import yaml

from broker.cli import main
from broker.deadline import wait_for
from broker.demo import run
from broker.demo.keep import KEPT_FILE, Kept
from broker.kafka.local import free_port_pair
from broker.kafka.settings import CONFIG_ENV
from tests.docs import blocks

ROOT = Path(__file__).resolve().parents[2]
PAGES = ("README.md", "docs/operators.md", "docs/analysts.md")
SMALL = {"mobility": 3000, "navigation": 1500, "rentals": 600}
BLOCK_TIMEOUT_S = 240
STATE = ".docs-test-state.sh"
_KEEP_SHELL_VARS = (
    "BASH*|EUID|PPID|UID|SHELLOPTS|FUNCNAME|GROUPS|DIRSTACK|PIPESTATUS|LINENO|RANDOM|SECONDS"
    "|HISTCMD|SRANDOM|EPOCHREALTIME|EPOCHSECONDS|COMP_*|OPT*|IFS|PS1|PS2|PS4|PWD|OLDPWD|SHLVL"
    "|_|__docs_var|MACHTYPE|HOSTTYPE|OSTYPE|HOSTNAME"
)
SAVE_STATE = (
    'for __docs_var in $(compgen -v); do case "$__docs_var" in '
    f"{_KEEP_SHELL_VARS}) ;; "
    f'*) declare -p "$__docs_var" 2>/dev/null ;; esac; done > {STATE}\n'
)


@dataclass(frozen=True)
class Stack:
    out: Path
    kept: Kept
    token: str
    admin_config: Path
    web_port: int
    simulated: Path


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    if os.environ.get("KAFKA_BOOTSTRAP"):
        pytest.skip("the docs run on the kept demo's own local broker, as `make demo KEEP=1`")
    root = tmp_path_factory.mktemp("docs-stack")
    out = root / "out"
    with pytest.MonkeyPatch.context() as patch:
        patch.delenv(CONFIG_ENV, raising=False)  # the demo starts its own broker
        small = tuple(replace(v, events=SMALL[v.kind]) for v in run.VERTICALS)
        patch.setattr(run, "VERTICALS", small)
        # The demo's files (CSV, GeoJSON, audit, map per contract) are not what the pages read.
        patch.setattr(run, "write_outputs", lambda *_: [])
        patch.chdir(root)
        try:
            assert run.run_demo(Path("out"), 0.01, keep=True) == 0
            kept = Kept(**json.loads((out / "demo" / KEPT_FILE).read_text(encoding="utf-8")))
            assert kept.kafka_data_dir and kept.analyst_config
            token = (out / "demo" / "kept" / "provider.token").read_text(encoding="utf-8")
            admin = Path(kept.kafka_data_dir) / "clients" / "admin.yaml"
            simulated = _simulated(root / "simulated")
            yield Stack(out, kept, token.strip(), admin, free_port_pair(), simulated)
        finally:
            if (out / "demo" / KEPT_FILE).exists():
                assert main(["demo", "--stop", "--out", str(out)]) == 0


def substitutions(stack: Stack) -> dict[str, str]:
    """The docs' stand-ins for a real deployment, and what they become on the test's stack."""
    return {
        "https://respublica.example": stack.kept.gateway_url,  # the city's gateway
        "1Hk3...Qs": stack.token,  # the provider's token (docs/operators.md)
        "127.0.0.1:6066": _host_port(stack.kept.worker_metrics),  # a worker's default web port
        "127.0.0.1:9464": _host_port(stack.kept.gateway_metrics),  # the gateway's metrics
        "127.0.0.1:8090": f"127.0.0.1:{stack.web_port}",  # respublica web's default port
        "--port 8090": f"--port {stack.web_port}",
    }


def _host_port(url: str) -> str:
    return url.split("//", 1)[1].split("/", 1)[0]


def workdir(stack: Stack, folder: Path) -> dict[str, str]:
    """A checkout-like folder with the files the pages name; returns the shell's environment."""
    folder.mkdir(parents=True)
    for name in ("contracts", "deploy"):
        (folder / name).symlink_to(ROOT / name)
    for config in (stack.out / "demo" / "kept").glob("*.kafka.yaml"):  # one per contract
        text = yaml_with_absolute_paths(config)
        (folder / config.name).write_text(text, encoding="utf-8")
    shutil.copy(stack.out / "demo" / "kept" / "tokens.yaml", folder / "tokens.yaml")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RESPUBLICA_", "KAFKA_"))}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env[CONFIG_ENV] = str(stack.admin_config)  # the local broker's admin, as on its machine
    env["GATEWAY"] = stack.kept.gateway_url
    for sample in stack.simulated.iterdir():
        shutil.copy(sample, folder / sample.name)
    return env


def _simulated(folder: Path) -> Path:
    """``ve.ndjson`` and ``trips.ndjson``: mobility events ending now (trips may be 3 h late)."""
    folder.mkdir()
    for stream, name in (("vehicle_events", "ve.ndjson"), ("trips", "trips.ndjson")):
        options = ("--start", "now", "--events", "300", "--stream", stream, "--out", name)
        subprocess.run(  # noqa: S603
            [sys.executable, "-m", "broker.cli", "simulate", "mobility", *options],
            cwd=folder,
            check=True,
            capture_output=True,
        )
    return folder


def yaml_with_absolute_paths(config: Path) -> str:
    """The client config, its relative file paths made absolute so that it works elsewhere."""
    data = yaml.safe_load(config.read_text(encoding="utf-8"))
    for key, value in data.items():
        if key.startswith("ssl_") and isinstance(value, str) and not Path(value).is_absolute():
            data[key] = str((config.parent / value).resolve())
    return str(yaml.safe_dump(data, sort_keys=False))


@dataclass
class Shell:
    """One reader's terminal: a folder, an environment, variables carried between blocks."""

    folder: Path
    env: dict[str, str]

    def script(self, body: str) -> str:
        state = f"[ -f {STATE} ] && source {STATE}\n"
        return f"{state}set -eo pipefail\n{body}\n{SAVE_STATE}"

    def run(self, body: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(  # noqa: S603
            ["bash", "-c", self.script(body)],  # noqa: S607
            cwd=self.folder,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=BLOCK_TIMEOUT_S,
            check=False,
        )


def run_block(shell: Shell, block: blocks.Block, table: dict[str, str]) -> str | None:
    """Run one command block; ``None`` when it did what the page says, else why not."""
    marker, text = block.marker, substituted(block.body, table)
    if marker is not None and marker.kind == "background":
        return run_background(shell, text, substituted(str(marker.arg), table))
    if block.info != "console":
        done = shell.run(text)
        return None if done.returncode == 0 else _failed(done)
    steps = blocks.console_steps(block.body)  # the shown output keeps its stand-ins
    body = "".join(
        f"printf '\\n@@step {i}@@\\n'\n{substituted(s.command, table)}\n"
        for i, s in enumerate(steps)
    )
    done = shell.run(body)
    if done.returncode != 0:
        return _failed(done)
    if marker is not None and marker.kind == "output-varies":
        return None
    printed = done.stdout.split("\n@@step ")[1:]
    for index, step in enumerate(steps):
        output = printed[index].split("@@\n", 1)[1]
        differs = blocks.matches(step.expected, output)
        if differs is not None:
            return f"`{step.command.splitlines()[0]}`: {differs}"
    return None


def run_background(shell: Shell, text: str, url: str) -> str | None:
    """Start a service block, wait until ``url`` answers, stop it."""
    process = subprocess.Popen(  # noqa: S603
        ["bash", "-c", shell.script(text)],  # noqa: S607
        cwd=shell.folder,
        env=shell.env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    try:
        wait_for(lambda: _answers(url, process), 60, f"{url} to answer")
    except Exception as exc:  # noqa: BLE001 - the block's failure is the finding
        os.killpg(process.pid, signal.SIGKILL)
        output, _ = process.communicate(timeout=10)
        return f"{exc}; exit {process.returncode}:\n{output[-2000:]}"
    os.killpg(process.pid, signal.SIGTERM)
    process.communicate(timeout=30)
    return None


def _answers(url: str, process: subprocess.Popen[str]) -> bool:
    if process.poll() is not None:
        msg = "the service exited"
        raise RuntimeError(msg)
    try:
        with urllib.request.urlopen(url, timeout=2) as response:  # noqa: S310 - loopback
            return bool(response.status == 200)
    except (OSError, urllib.error.HTTPError):
        return False


def _failed(done: subprocess.CompletedProcess[str]) -> str:
    return f"exit {done.returncode}\nstdout: {done.stdout[-1500:]}\nstderr: {done.stderr[-2500:]}"


def substituted(text: str, table: dict[str, str]) -> str:
    for stand_in, real in table.items():
        text = text.replace(stand_in, real)
    return text


@pytest.mark.integration
@pytest.mark.parametrize("page", PAGES)
def test_every_command_block_of_the_page_runs(page: str, stack: Stack, tmp_path: Path) -> None:
    found = blocks.read(ROOT / page, ROOT)
    assert not blocks.problems(found), "\n".join(blocks.problems(found))
    shell = Shell(tmp_path / "work", {})
    shell.env = workdir(stack, shell.folder)
    table = substitutions(stack)
    ran: set[str] = set()
    failures = []
    for block in found:
        if not block.is_command or (block.marker and block.marker.kind == "skip"):
            continue
        started = time.monotonic()
        failure = run_block(shell, block, table)
        print(f"{block.where:24} {time.monotonic() - started:6.1f} s")  # shown with -rP
        ran.add(block.where)
        if failure is not None:
            failures.append(f"{block.where} ({block.info}): {failure}")
    failures += blocks.unrun(found, ran)
    assert not failures, "\n\n".join(failures)
