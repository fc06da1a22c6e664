"""``respublica demo --keep``: the broker and services stay up (the web map among them, its
address printed), and every command the demo prints next works as printed (run by bash, as a
user pastes them); ``--stop`` ends them (checked when the session's kept demo,
``tests/kept_demo.py``, stops). Without ``--keep`` the demo says why there is nothing
left to read instead, and how to start the map."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from broker.demo.keep import next_steps, stop_kept
from broker.kafka.local import process_alive
from tests.analysts.rows import load_example
from tests.kept_demo import OUT, KeptDemo


def printed_commands(text: str) -> list[str]:
    """The indented command lines after "Try next"."""
    tail = text.split("Try next", 1)[1].splitlines()[1:]
    return [line.strip() for line in tail if line.startswith("  ")]


@pytest.mark.integration
def test_demo_keep_leaves_it_running_and_every_printed_command_works(
    kept_demo: KeptDemo,
) -> None:
    # The session's kept demo (tests/kept_demo.py); its fixture checks `--stop` at the end.
    text, kept, out = kept_demo.printed, kept_demo.kept, OUT
    assert kept.analyst_config and kept.kafka_data_dir
    services = (kept.worker_pid, kept.gateway_pid, kept.web_pid)
    assert all(process_alive(pid) for pid in services)
    assert f"respublica demo --stop --out {out}" in text
    assert f"web map       pid {kept.web_pid}, {kept.web_url} " in text
    assert "the map of each view lyon-analysts may read" in text
    for contract in ("lyon-micromobility", "bordeaux-navigation", "paris-str"):
        block = text.split(f"\n{contract} (", 1)[1]
        assert "  utility (published of the accepted events" in block
    assert "    availability         events " in text and "groups " in text
    commands = printed_commands(text)
    analyst = "out/demo/kept/lyon-analysts.kafka.yaml"
    assert commands[0] == f"export RESPUBLICA_KAFKA_CONFIG={analyst}"
    assert any(c.startswith("respublica export lyon-micromobility") for c in commands)

    script = "set -eo pipefail\n" + "\n".join(commands) + "\n"
    env = {k: v for k, v in os.environ.items() if not k.startswith("RESPUBLICA_KAFKA")}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    done = subprocess.run(
        ["bash", "-c", script],
        capture_output=True,
        text=True,
        cwd=kept_demo.root,
        env=env,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "k=10:" in done.stdout  # subscribe's report lines
    assert '"public.lyon-micromobility.availability-value"' in done.stdout  # /subjects
    assert "respublica_" in done.stdout  # the worker's metrics
    # The web map's list (curl prints no newline): what its credentials may read.
    views, _ = json.JSONDecoder().raw_decode(done.stdout[done.stdout.index('{"principal"') :])
    assert views["principal"] == "lyon-analysts"
    assert {v["view"] for v in views["views"]} == {"availability", "origin_destination"}
    features = json.loads((kept_demo.root / "od.geojson").read_text(encoding="utf-8"))
    assert features["features"]
    assert "lyon-micromobility" in (kept_demo.root / "audit.md").read_text(encoding="utf-8")


@pytest.mark.unit
def test_without_keep_the_demo_says_the_broker_is_gone(tmp_path: Path) -> None:
    contracts = [load_example(tmp_path, "micromobility")]
    lines = next_steps(None, Path("out"), contracts, external=False)
    assert "gone" in lines[0] and "have nothing to read" in lines[0]
    assert "make demo KEEP=1" in lines[1] and "respublica demo --keep" in lines[1]
    assert not any(line.strip().startswith("respublica ") for line in lines)


@pytest.mark.unit
def test_on_a_configured_cluster_the_views_stay_and_the_commands_are_printed(
    tmp_path: Path,
) -> None:
    contracts = [load_example(tmp_path, "micromobility")]
    lines = next_steps(None, Path("out"), contracts, external=True)
    assert "stay on the configured cluster" in lines[0]
    assert "  respublica export lyon-micromobility origin_destination" in "\n".join(lines)
    assert "  respublica web --contracts out/demo" in lines


@pytest.mark.unit
def test_stop_without_a_kept_demo_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(Exception, match="no kept demo under"):
        stop_kept(tmp_path)
