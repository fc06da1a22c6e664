"""Every command and Python block of the pages in ``blocks.RUN_PAGES`` (README.md and the
docs pages whose examples run against a broker) runs as a reader pastes it, bash for commands
and the venv's ``python`` for Python, against a live stack: the session's
``respublica demo --keep`` (``tests/kept_demo.py``) on its own local broker (TLS + SCRAM, the
example contracts applied, a small simulated day released, the worker, a wall-clock gateway
and the web map left running, the analyst ``lyon-analysts`` with credentials).

One shell session per page: the blocks run in page order in a work folder of their own, and
the variables a block sets are there for the next (``NOW``, ``TOKEN``), as in a terminal.
Each block runs under ``set -eo pipefail`` (a Python block as ``python - <<EOF``, so an
exception fails it); a ``console`` block's shown output is compared with what its commands
print. The docs' placeholders for what only a real deployment has (its host name, a token,
the default ports, the admin's client config) are replaced by the stack's (``substitutions``),
and the files they name (``tokens.yaml``, ``trips.ndjson``, ``admin.kafka.yaml``, the
analyst's client config) are put in the work folder first (``workdir``). A runnable block the
test did not run fails the test unless a ``<!-- docs-test: skip — why -->`` marker says why
(``tests/docs/blocks.py``); on the other pages every runnable block needs that marker, naming
where its behaviour is tested (``tests/docs/test_blocks.py``, no broker).
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from broker.deadline import wait_for
from broker.demo.keep import Kept
from broker.kafka.local import free_port_pair
from broker.kafka.settings import CONFIG_ENV
from tests.docs import blocks
from tests.kept_demo import KeptDemo

ROOT = Path(__file__).resolve().parents[2]
BLOCK_TIMEOUT_S = 240
STATE = ".docs-test-state.sh"
PYTHON_END = "__DOCS_TEST_PYTHON__"
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
def stack(kept_demo: KeptDemo, tmp_path_factory: pytest.TempPathFactory) -> Stack:
    """The session's kept demo (``tests/kept_demo.py``), as the pages need it."""
    out, kept = kept_demo.out, kept_demo.kept
    assert kept.kafka_data_dir and kept.analyst_config
    token = (out / "demo" / "kept" / "provider.token").read_text(encoding="utf-8")
    admin = Path(kept.kafka_data_dir) / "clients" / "admin.yaml"
    simulated = _simulated(tmp_path_factory.mktemp("docs-stack") / "simulated")
    return Stack(out, kept, token.strip(), admin, free_port_pair(), simulated)


def substitutions(stack: Stack) -> dict[str, str]:
    """The docs' stand-ins for a real deployment, and what they become on the test's stack."""
    return {
        "https://respublica.example": stack.kept.gateway_url,  # the city's gateway
        "https://respublica.city.example": stack.kept.gateway_url,  # its schema endpoint
        "1Hk3...Qs": stack.token,  # the provider's token (docs/operators.md)
        "127.0.0.1:6066": _host_port(stack.kept.worker_metrics),  # a worker's default web port
        "127.0.0.1:9464": _host_port(stack.kept.gateway_metrics),  # the gateway's metrics
        "127.0.0.1:8090": f"127.0.0.1:{stack.web_port}",  # respublica web's default port
        "--port 8090": f"--port {stack.web_port}",
        "--out /secure/": "--out ",  # a safe place of the operator's (docs/security.md)
        "my-contract.yaml": "contracts/examples/rentals.yaml",  # a one-stream contract
        # docs/contracts.md's utility report on a tenth of its sample (8 s less; same commands)
        "--events 36000 ": "--events 3600 ",
        "--events 8000 ": "--events 800 ",
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
    admin = yaml_with_absolute_paths(stack.admin_config)  # the broker's admin (docs/security.md)
    (folder / "admin.kafka.yaml").write_text(admin, encoding="utf-8")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RESPUBLICA_", "KAFKA_"))}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env[CONFIG_ENV] = str(stack.admin_config)  # the local broker's admin, as on its machine
    env["GATEWAY"] = stack.kept.gateway_url
    for sample in stack.simulated.iterdir():
        shutil.copy(sample, folder / sample.name)
    return env


def _simulated(folder: Path) -> Path:
    """``ve.ndjson`` and ``trips.ndjson``: mobility events ending now (trips may be 3 h late);
    ``sample.ndjson``: rentals, for the one-stream ``my-contract.yaml`` (docs/contracts.md)."""
    folder.mkdir()
    for kind, stream, name in (
        ("mobility", "vehicle_events", "ve.ndjson"),
        ("mobility", "trips", "trips.ndjson"),
        ("rentals", "activity", "sample.ndjson"),
    ):
        options = ("--start", "now", "--events", "300", "--stream", stream, "--out", name)
        subprocess.run(  # noqa: S603
            [sys.executable, "-m", "broker.cli", "simulate", kind, *options],
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
    if block.info == "python":  # the venv's python, in the page's folder and environment
        done = shell.run(f"python - <<'{PYTHON_END}'\n{text}{PYTHON_END}\n")
        return None if done.returncode == 0 else _failed(done)
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
@pytest.mark.parametrize("page", blocks.RUN_PAGES)
def test_every_command_block_of_the_page_runs(page: str, stack: Stack, tmp_path: Path) -> None:
    found = blocks.read(ROOT / page, ROOT)
    assert not blocks.problems(found), "\n".join(blocks.problems(found))
    shell = Shell(tmp_path / "work", {})
    shell.env = workdir(stack, shell.folder)
    table = substitutions(stack)
    ran: set[str] = set()
    failures = []
    for block in found:
        if not block.runs or block.skipped:
            continue
        started = time.monotonic()
        failure = run_block(shell, block, table)
        print(f"{block.where:24} {time.monotonic() - started:6.1f} s")  # shown with -rP
        ran.add(block.where)
        if failure is not None:
            failures.append(f"{block.where} ({block.info}): {failure}")
    failures += blocks.unrun(found, ran)
    assert not failures, "\n\n".join(failures)
