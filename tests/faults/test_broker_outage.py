"""Faults under HTTP and Kafka load, on a broker of this module's own (docs/reliability.md).

* The broker killed (SIGKILL), down for ``RESPUBLICA_OUTAGE_S``, restarted on the same data: no
  component exits, every ``/healthz`` says degraded within 5 s of the kill and ok again after
  the restart.
* The gateway, the validator and the worker each killed (SIGKILL) at a seeded point mid-batch
  and restarted.

Either way every acknowledged event is on raw and the releases equal the oracle on the
distinct events raw holds (re-sent chunks make duplicates; they count once).
"""

from __future__ import annotations

import os
import random
import signal
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from broker.kafka.clients import end_of_stream
from broker.kafka.local import LocalKafka, LocalKafkaConfig, free_port_pair
from broker.kafka.settings import CONFIG_ENV
from connectors.simulate.base import SimOptions
from connectors.simulate.mobility import MobilitySimulator
from tests.faults.support import (
    STREAM,
    Providers,
    components,
    outage_s,
    raw_event_ids,
    report,
    seed,
    watching,
)
from tests.worker.support import (
    create_topics,
    dumps,
    expected_windows,
    read_public,
    unique_contract,
    wait_for,
)

pytestmark = pytest.mark.integration

EVENTS = 3_000
VIEW = "availability"


@pytest.fixture(scope="module")
def own_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalKafka]:
    """A secure broker of this module's own, which the test may kill; the environment's
    credentials point at it while the module runs (and at the session's broker after)."""
    broker = LocalKafka(
        # A second JVM on a busy 2-core machine: give it the time a loaded CI run needs.
        LocalKafkaConfig(
            port=free_port_pair(),
            data_dir=tmp_path_factory.mktemp("own-kafka"),
            start_timeout_s=180,
        )
    )
    _, status = broker.start()
    assert status.client_config is not None
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv(CONFIG_ENV, str(status.client_config))
        try:
            yield broker
        finally:
            broker.stop()


def _events(rng_seed: int) -> list[dict[str, Any]]:
    start = int(time.time() * 1000) - 8 * 3_600_000
    out = []
    for item in MobilitySimulator(SimOptions(seed=rng_seed, start_ms=start)).records():
        if item.stream == STREAM:
            out.append(item.record)
            if len(out) == EVENTS:
                return out
    raise AssertionError("the simulator is endless")


def _long_lateness(data: dict[str, Any]) -> None:
    for stream in data["streams"]:
        stream["allowed_lateness"] = "P1D"  # the events are hours old when pushed


def _start(stack: list[Any], tmp_path: Path) -> dict[str, str]:
    env = dict(os.environ, RESPUBLICA_MASTER_KEY="22" * 32, PYTHONUNBUFFERED="1")
    env["TMPDIR"] = str(tmp_path)
    for component in stack:
        component.start(env)
    return env


def _checks(stack: list[Any], where: str) -> tuple[Callable[[], None], Callable[[], bool]]:
    """``all_alive`` (asserts no component exited) and ``all_ok`` (every ``/healthz`` 200)."""

    def all_alive() -> None:
        for component in stack:
            assert component.alive(), f"{component.name} exited {where}\n{component.tail()}"

    def all_ok() -> bool:
        all_alive()
        return all(c.health()[0] == 200 for c in stack)

    return all_alive, all_ok


def _released_as_the_oracle_says(
    bootstrap: str, contract: Any, events: list[dict[str, Any]], check: Any, where: str
) -> int:
    """End the stream, wait for every window, compare with the oracle; returns the count."""
    on_raw = set(raw_event_ids(bootstrap, contract))
    end_of_stream(bootstrap, contract)
    stored = [e for e in events if e["event_id"] in on_raw]
    expected = expected_windows(contract, {STREAM: stored, "trips": []}, VIEW)

    def released() -> bool:
        check()
        return len(read_public(bootstrap, contract, VIEW).windows) >= len(expected)

    wait_for(released, 240, "every availability window", every_s=1.0)
    got = read_public(bootstrap, contract, VIEW)
    assert got.windows == expected, f"{where}: {dumps(got.windows)} != {dumps(expected)}"
    return len(expected)


def test_components_killed_mid_batch_lose_nothing(own_broker: LocalKafka, tmp_path: Path) -> None:
    run_seed = seed()
    where = f"(seed {run_seed}; replay with RESPUBLICA_FAULT_SEED={run_seed})"
    rng = random.Random(run_seed)
    bootstrap = own_broker.config.bootstrap
    contract = unique_contract(tmp_path, "micromobility", partitions=2, edit=_long_lateness)
    create_topics(bootstrap, contract)
    stack = components(bootstrap, contract, tmp_path, f"fault-{uuid.uuid4().hex[:8]}")
    env = _start(stack, tmp_path)
    all_alive, all_ok = _checks(stack, where)

    try:
        wait_for(all_ok, 120, "every component healthy")
        events = _events(run_seed)
        gateway_url = stack[0].health_url.removesuffix("/healthz")
        providers = Providers(gateway_url, bootstrap, contract, events).start()
        # One kill each, in a seeded order, at seeded points between 15 % and 75 % of the load.
        points = sorted(rng.uniform(0.15, 0.75) * EVENTS for _ in stack)
        victims = rng.sample(stack, len(stack))
        for point, victim in zip(points, victims, strict=True):
            wait_for(lambda p=point: providers.sent >= p, 180, f"load before killing {victim.name}")
            victim.kill()
            victim.start(env)
        wait_for(all_ok, 180, "every component healthy after the kills", every_s=0.5)
        providers.wait_done(300)
        wait_for(
            lambda: providers.acked <= set(raw_event_ids(bootstrap, contract)),
            120,
            "every acknowledged event on raw",
            every_s=2.0,
        )
        assert len(providers.acked) == EVENTS, f"providers gave up {where}"
        windows = _released_as_the_oracle_says(bootstrap, contract, events, all_alive, where)
        order = [v.name for v in victims]
        report(
            "components_killed",
            {"seed": run_seed, "order": order, "windows": windows, "resent": providers.refused},
        )
    finally:
        codes = {c.name: c.stop() for c in stack}
    for component in stack:
        assert codes[component.name] == 0, f"{component.name} {where}\n{component.tail()}"


def test_a_broker_outage_under_load_changes_nothing(own_broker: LocalKafka, tmp_path: Path) -> None:
    run_seed, down_s = seed(), outage_s()
    where = f"(seed {run_seed}; replay with RESPUBLICA_FAULT_SEED={run_seed})"
    bootstrap = own_broker.config.bootstrap
    contract = unique_contract(tmp_path, "micromobility", partitions=2, edit=_long_lateness)
    create_topics(bootstrap, contract)
    stack = components(bootstrap, contract, tmp_path, f"fault-{uuid.uuid4().hex[:8]}")
    _start(stack, tmp_path)
    all_alive, all_ok = _checks(stack, where)

    try:
        wait_for(all_ok, 120, "every component healthy")
        events = _events(run_seed)
        gateway_url = stack[0].health_url.removesuffix("/healthz")
        providers = Providers(gateway_url, bootstrap, contract, events).start()
        kill_at = EVENTS * (0.2 + 0.3 * (run_seed % 1000) / 1000)  # seeded: 20-50 % in
        with watching(stack) as health:
            wait_for(lambda: providers.sent >= kill_at, 120, "load before the kill")
            pid = own_broker.status().pid
            assert pid is not None
            os.kill(pid, signal.SIGKILL)
            health.marks["kill"] = time.monotonic()
            deadline = time.monotonic() + down_s
            while time.monotonic() < deadline:  # the outage itself (a fault, not a sync)
                all_alive()
                time.sleep(1.0)
            own_broker.config.pid_file.unlink(missing_ok=True)
            restarting = time.monotonic()
            own_broker.start()
            health.marks["restart"] = time.monotonic()
            broker_start_s = round(health.marks["restart"] - restarting, 2)
            wait_for(all_ok, 180, "every component healthy after the restart", every_s=0.5)
            providers.wait_done(300)
        all_alive()

        figures: dict[str, Any] = {
            "seed": run_seed,
            "outage_s": down_s,
            "broker_restart_s": broker_start_s,
        }
        for component in stack:
            degraded = health.first(component.name, "kill", ok=False)
            recovered = health.first(component.name, "restart", ok=True)
            figures[component.name] = {"degraded_s": degraded, "ok_after_restart_s": recovered}
            assert degraded is not None and degraded <= 5.0, f"{component.name} {where}"
            assert recovered is not None, f"{component.name} never ok again {where}"

        wait_for(
            lambda: providers.acked <= set(raw_event_ids(bootstrap, contract)),
            120,
            "every acknowledged event on raw",
            every_s=2.0,
        )
        on_raw = set(raw_event_ids(bootstrap, contract))
        figures |= {
            "acknowledged": len(providers.acked),
            "chunks_refused_then_resent": providers.refused,
            "on_raw_distinct": len(on_raw),
        }
        assert len(providers.acked) == EVENTS, f"providers gave up {where}"
        assert providers.refused > 0, f"the outage refused nothing: no load during it {where}"

        windows = _released_as_the_oracle_says(bootstrap, contract, events, all_alive, where)
        figures["windows"] = windows
        report("broker_outage", figures)
    finally:
        codes = {c.name: c.stop() for c in stack}
    for component in stack:
        assert codes[component.name] == 0, f"{component.name} {where}\n{component.tail()}"
