"""One ``respublica demo --keep`` for the whole session (a pytest plugin, registered by
``tests/conftest.py``): the demo test and the docs test both read the same kept stack instead
of each starting its own (about 40 s each).

``kept_demo`` runs the demo once, with small simulated days, in a folder of its own and on its
own local broker (TLS + SCRAM), and captures what it prints. It is stopped after the last test
that uses it (the rest of ``make test`` runs without a second broker and its services), or at
the end of the session if that test did not run. The stop is checked: ``--stop`` says it
stopped each service, their processes and the broker are gone, and ``kept.json`` is removed.
Tests that change the stack (the docs pages add users and post events) only add to it: they
remove no topic, view or grant the demo made, so the tests that use it pass in any order.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import pytest

from broker.cli import main
from broker.demo import run
from broker.demo.keep import KEPT_FILE, Kept
from broker.kafka.local import LocalKafka, LocalKafkaConfig, process_alive
from broker.kafka.settings import CONFIG_ENV

SMALL = {"mobility": 3000, "navigation": 1500, "rentals": 600}
OUT = Path("out")
"""The demo's ``--out``, relative to ``KeptDemo.root`` as a user types it."""
_LAST_USER = pytest.StashKey[str]()
_STOP = pytest.StashKey[Callable[[], None]]()


@dataclass(frozen=True)
class KeptDemo:
    """The kept demo: the folder it ran in, what it printed, and its ``kept.json``."""

    root: Path
    printed: str
    kept: Kept

    @property
    def out(self) -> Path:
        return self.root / OUT


@pytest.hookimpl(trylast=True)  # after `-k`/`-m` deselected theirs
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    users = [item for item in items if "kept_demo" in getattr(item, "fixturenames", ())]
    if users:
        config.stash[_LAST_USER] = users[-1].nodeid


@pytest.hookimpl(trylast=True)
def pytest_runtest_teardown(item: pytest.Item) -> None:
    # After the last test that reads the kept demo: stop it (a failed check is its error).
    if item.config.stash.get(_LAST_USER, None) == item.nodeid:
        stop = item.config.stash.get(_STOP, None)
        if stop is not None:
            del item.config.stash[_STOP]
            stop()


@pytest.fixture(scope="session")
def kept_demo(
    tmp_path_factory: pytest.TempPathFactory, pytestconfig: pytest.Config
) -> Iterator[KeptDemo]:
    if os.environ.get("KAFKA_BOOTSTRAP"):
        pytest.skip("the kept local broker is the case under test; KAFKA_BOOTSTRAP names another")
    root = tmp_path_factory.mktemp("kept-demo")
    printed = io.StringIO()
    try:
        with _as_a_user_in(root), contextlib.redirect_stdout(printed):
            small = tuple(replace(v, events=SMALL[v.kind]) for v in run.VERTICALS)
            with pytest.MonkeyPatch.context() as patch:
                patch.setattr(run, "VERTICALS", small)
                assert run.run_demo(OUT, 0.01, keep=True) == 0
        kept = Kept(**json.loads((root / OUT / "demo" / KEPT_FILE).read_text(encoding="utf-8")))
        pytestconfig.stash[_STOP] = lambda: _stop_and_check(root)
        yield KeptDemo(root, printed.getvalue(), kept)
    finally:  # not stopped yet: a failed start, or a session that ended before the last user
        if _STOP in pytestconfig.stash:
            del pytestconfig.stash[_STOP]
        if (root / OUT / "demo" / KEPT_FILE).exists():
            _stop_and_check(root)


@contextlib.contextmanager
def _as_a_user_in(root: Path) -> Iterator[None]:
    """In ``root``, without the session broker's config: the demo starts its own broker."""
    with pytest.MonkeyPatch.context() as patch:
        patch.delenv(CONFIG_ENV, raising=False)
        patch.chdir(root)
        yield


def _stop_and_check(root: Path) -> None:
    kept = Kept(**json.loads((root / OUT / "demo" / KEPT_FILE).read_text(encoding="utf-8")))
    services = (kept.worker_pid, kept.gateway_pid, kept.web_pid)
    printed = io.StringIO()
    with _as_a_user_in(root), contextlib.redirect_stdout(printed):
        assert main(["demo", "--stop", "--out", str(OUT)]) == 0
    stopped = printed.getvalue()
    assert "stopped the worker" in stopped and "stopped the gateway" in stopped
    assert "stopped the web map" in stopped
    assert not any(process_alive(pid) for pid in services)
    assert kept.kafka_data_dir
    data = Path(kept.kafka_data_dir)
    if not data.is_absolute():
        data = root / data
    assert not LocalKafka(LocalKafkaConfig(data_dir=data)).status().running
    assert not (root / OUT / "demo" / KEPT_FILE).exists()
