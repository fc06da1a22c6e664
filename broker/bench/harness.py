"""``respublica bench``: rounds of B1, B2, P, F (and P2) on the same broker, then ratios.

Each round preloads a fresh contract's raw topics (so the worker of a round never restores
another round's state), then runs every variant over the same bytes, each in its own process:

* B1 / B2 (``broker/bench/variants.py``) and F (``broker/bench/faust_plain.py``) read the
  ``vehicle_events`` raw topic and report their own timings;
* P runs ``respublica worker`` (the real code path: availability and origin–destination views)
  and is timed from outside, from its first folded event to the release of the last expected
  window, read on its ``/metrics``; its releases must equal the batch oracle before any number
  is reported. P2 is the same with two worker processes on another fresh contract.
"""

from __future__ import annotations

import json
import statistics
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kafka import KafkaAdminClient, KafkaConsumer, TopicPartition
from kafka.admin import NewTopic

from broker.bench.preload import EVENTS_STREAM, BenchInput, preload, simulate
from broker.bench.verify import expected_windows, read_public
from broker.deadline import wait_for
from broker.kafka.clients import read_to_end
from broker.kafka.local import free_port_pair
from broker.kafka.settings import as_settings
from broker.processes import (
    BenchError,
    Child,
    cpu_seconds,
    histogram_quantile,
    metric_sum,
    peak_rss_mb,
    scrape,
)
from policies.oracle import evaluate
from policies.pseudonymise import KeyRing

MASTER_KEY = "42" * 32
DEADLINE_S = 1800.0
VIEWS = ("availability", "origin_destination")


@dataclass
class Measurement:
    """One run of one variant."""

    variant: str
    events: int
    seconds: float
    cpu_seconds: float
    peak_rss_mb: float
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def events_per_s(self) -> float:
        return self.events / self.seconds if self.seconds else 0.0

    @property
    def cpu_us_per_event(self) -> float:
        return 1e6 * self.cpu_seconds / self.events if self.events else 0.0


@dataclass(frozen=True)
class BenchOptions:
    events: int = 100_000
    partitions: int = 4
    rounds: int = 3
    variants: tuple[str, ...] = ("b1", "b2", "p", "f")
    workdir: Path = Path("out/bench")


def _sink(bootstrap: str, name: str, partitions: int) -> str:
    admin = KafkaAdminClient(**as_settings(bootstrap).kafka_python("bench"))
    try:
        admin.create_topics([NewTopic(name, partitions, 1)])
    finally:
        admin.close()
    return name


def run_baseline(variant: str, bootstrap: str, inp: BenchInput, workdir: Path) -> Measurement:
    """B1 or B2 in its own process over the vehicle events (and end-of-stream marks)."""
    contract, stream = inp.contract, inp.contract.stream(EVENTS_STREAM)
    schema = workdir / "vehicle_event.avsc"
    schema.write_text(json.dumps(stream.raw_schema))
    result = workdir / f"{variant}-{uuid.uuid4().hex[:6]}.json"
    sink = _sink(bootstrap, f"bench.{contract.id}.{variant}.{uuid.uuid4().hex[:6]}", inp.partitions)
    records = inp.vehicle_events + stream.partitions
    child = Child(
        [
            "-m",
            "broker.bench.variants",
            variant,
            "--bootstrap",
            bootstrap,
            "--source",
            contract.topic_raw(stream),
            "--sink",
            sink,
            "--events",
            str(records),
            "--schema",
            str(schema),
            "--result",
            str(result),
        ],
        workdir / f"{variant}.log",
    )
    wait_for(lambda: not child.alive(), DEADLINE_S, f"{variant} to finish")
    if child.proc.returncode:
        child.check_alive()  # raises with the log tail
    data = json.loads(result.read_text())
    return Measurement(
        variant,
        int(data["events"]),
        float(data["seconds"]),
        float(data["cpu_seconds"]),
        float(data["peak_rss_mb"]),
        {"batch_ms_p50": data["batch_ms_p50"], "batch_ms_p99": data["batch_ms_p99"]},
    )


def run_faust(bootstrap: str, inp: BenchInput, workdir: Path) -> Measurement:
    """F, the plain faust availability view, over the vehicle events."""
    contract, stream = inp.contract, inp.contract.stream(EVENTS_STREAM)
    result = workdir / f"f-{uuid.uuid4().hex[:6]}.json"
    app_id = f"bench-faust-{uuid.uuid4().hex[:8]}"
    sink = _sink(bootstrap, f"bench.{contract.id}.f.{uuid.uuid4().hex[:6]}", 1)
    env = {
        "BENCH_SCHEMA": json.dumps(stream.raw_schema),
        "BENCH_EVENTS": str(inp.vehicle_events),
        "BENCH_BOOTSTRAP": bootstrap,
        "BENCH_SOURCE": contract.topic_raw(stream),
        "BENCH_SINK": sink,
        "BENCH_PARTITIONS": str(inp.partitions),
        "BENCH_RESULT": str(result),
        "BENCH_APP_ID": app_id,
        "BENCH_HMAC_KEY": MASTER_KEY,
        "BENCH_K": "10",
        "BENCH_DATADIR": str(workdir / app_id),
    }
    child = Child(
        ["-m", "broker.bench.faust_plain", "worker", "-l", "warn", "--without-web"],
        workdir / "f.log",
        env,
    )
    try:
        wait_for(lambda: result.exists() or not child.alive(), DEADLINE_S, "F to read every event")
        child.check_alive()
        data = json.loads(result.read_text())
        _settled(bootstrap, sink)  # let its window-close timer publish what it will
    finally:
        child.stop()
    return Measurement(
        "f",
        inp.vehicle_events,
        float(data["seconds"]),
        float(data["cpu_seconds"]),
        float(data["peak_rss_mb"]),
        check_faust(bootstrap, sink, inp),
    )


def _end(consumer: KafkaConsumer, tp: TopicPartition) -> int:
    return int(consumer.end_offsets([tp])[tp])


def _settled(bootstrap: str, topic: str, quiet_s: float = 3.0, timeout_s: float = 30.0) -> None:
    """Wait until nothing was appended to ``topic`` for ``quiet_s`` (at most ``timeout_s``)."""
    consumer = KafkaConsumer(**as_settings(bootstrap).kafka_python("bench"), group_id=None)
    tp = TopicPartition(topic, 0)
    try:
        last, since = _end(consumer, tp), time.monotonic()
        deadline = since + timeout_s
        while time.monotonic() - since < quiet_s and time.monotonic() < deadline:
            time.sleep(0.2)
            end = _end(consumer, tp)
            if end != last:
                last, since = end, time.monotonic()
    finally:
        consumer.close()


def check_faust(bootstrap: str, sink: str, inp: BenchInput) -> dict[str, Any]:
    """F's published (window, cell, vehicles) against the oracle's availability groups."""
    expected = {
        (r.window.start, g.group["cell"], g.measures["vehicles"])
        for r in evaluate(inp.contract, inp.events, keyring=KeyRing())["availability"]
        for g in r.groups
    }
    consumer = KafkaConsumer(**as_settings(bootstrap).kafka_python("bench"), group_id=None)
    try:
        rows = [json.loads(r.value) for r in read_to_end(consumer, TopicPartition(sink, 0))]
    finally:
        consumer.close()
    got = [(int(row["window_start"]), str(row["cell"]), int(row["vehicles"])) for row in rows]
    published = set(got)
    return {
        "oracle_equal": published == expected and len(got) == len(published),
        "groups_expected": len(expected),
        "groups_matching": len(published & expected),
        "groups_missing": len(expected - published),
        "groups_wrong": len(published - expected),
        "duplicates": len(got) - len(published),
    }


@contextmanager
def _workers(
    bootstrap: str, inp: BenchInput, count: int, workdir: Path
) -> Iterator[list[tuple[Child, int]]]:
    group = f"bench-{uuid.uuid4().hex[:8]}"
    started: list[tuple[Child, int]] = []
    try:
        for i in range(count):
            port = free_port_pair()
            args = [
                "-m",
                "broker.cli",
                "worker",
                "--bootstrap",
                bootstrap,
                "--contracts",
                str(inp.contract_file),
                "--worker-id",
                f"{group}-{i}",
                "--group",
                group,
                "--web-port",
                str(port),
                "--log-level",
                "warning",
            ]
            child = Child(
                args,
                workdir / f"p{count}-{i}.log",
                {"RESPUBLICA_MASTER_KEY": MASTER_KEY, "TMPDIR": str(workdir)},
            )
            started.append((child, port))
        yield started
    finally:
        for child, _ in started:
            child.stop()


def run_policy(bootstrap: str, inp: BenchInput, workdir: Path, workers: int = 1) -> Measurement:
    """P (or P2): the real worker, checked against the oracle."""
    contract = inp.contract
    expected = {view: expected_windows(contract, inp.events, view) for view in VIEWS}
    total_windows = sum(len(w) for w in expected.values())
    with _workers(bootstrap, inp, workers, workdir) as procs:

        def texts() -> list[str]:
            for child, _ in procs:
                child.check_alive()
            return [scrape(port) for _, port in procs]

        def folded() -> float:
            return sum(metric_sum(t, "respublica_events_folded_total") for t in texts())

        t0 = wait_for(lambda: folded() > 0, DEADLINE_S, "the first folded event", 0.05)
        cpu0 = [cpu_seconds(child.pid) for child, _ in procs]
        t1 = wait_for(
            lambda: (
                sum(metric_sum(t, "respublica_windows_released_total") for t in texts())
                >= total_windows
            ),
            DEADLINE_S,
            "every window to be released",
            0.05,
        )
        cpu = sum(cpu_seconds(c.pid) - c0 for (c, _), c0 in zip(procs, cpu0, strict=True))
        rss = max(peak_rss_mb(child.pid) for child, _ in procs)
        final = texts()
    for view, windows in expected.items():
        got = read_public(bootstrap, contract, view)
        if got.windows != windows or got.duplicates:
            msg = (
                f"P's releases of {view} differ from the oracle "
                f"({len(got.windows)} vs {len(windows)} windows, {got.duplicates} duplicates)"
            )
            raise BenchError(msg)
    delay = "respublica_window_release_delay_seconds"
    return Measurement(
        "p2" if workers == 2 else "p",
        inp.total,
        t1 - t0,
        cpu,
        rss,
        {
            "windows": total_windows,
            "oracle_equal": True,
            "release_delay_p50_s": histogram_quantile(final, delay, 0.5),
            "release_delay_p99_s": histogram_quantile(final, delay, 0.99),
        },
    )


def run_round(
    bootstrap: str, options: BenchOptions, events: dict[str, list[dict[str, Any]]], workdir: Path
) -> list[Measurement]:
    inp = preload(bootstrap, workdir, options.events, options.partitions, events=events)
    out: list[Measurement] = []
    for variant in options.variants:
        if variant in ("b1", "b2"):
            out.append(run_baseline(variant, bootstrap, inp, workdir))
        elif variant == "f":
            out.append(run_faust(bootstrap, inp, workdir))
        elif variant == "p":
            out.append(run_policy(bootstrap, inp, workdir))
        elif variant == "p2":
            fresh = preload(bootstrap, workdir, options.events, options.partitions, events=events)
            out.append(run_policy(bootstrap, fresh, workdir, workers=2))
        print(f"  {out[-1].variant:>3}: {out[-1].events_per_s:>10,.0f} events/s", flush=True)
    return out


def run(bootstrap: str, options: BenchOptions) -> dict[str, Any]:
    """Every round, then the summary (medians) and ratios."""
    options.workdir.mkdir(parents=True, exist_ok=True)
    events = simulate(options.events)
    rounds: list[list[Measurement]] = []
    for number in range(options.rounds):
        print(f"round {number + 1}/{options.rounds}", flush=True)
        rounds.append(run_round(bootstrap, options, events, options.workdir))
    return summarise(rounds, options)


def _median(values: list[float]) -> float:
    return statistics.median(values) if values else 0.0


def summarise(rounds: list[list[Measurement]], options: BenchOptions) -> dict[str, Any]:
    by_variant: dict[str, list[Measurement]] = {}
    for measurements in rounds:
        for m in measurements:
            by_variant.setdefault(m.variant, []).append(m)
    variants: dict[str, Any] = {}
    for name, runs in by_variant.items():
        rates = [m.events_per_s for m in runs]
        extras: dict[str, Any] = {}
        for key in runs[0].extra:
            values = [m.extra[key] for m in runs]
            if isinstance(values[0], bool):
                extras[key] = all(values)  # e.g. equal to the oracle in every round
            elif isinstance(values[0], int | float):
                extras[key] = _median(values)
            else:
                extras[key] = values[0]
        variants[name] = {
            "events": runs[0].events,
            "events_per_s_median": _median(rates),
            "events_per_s_min": min(rates),
            "events_per_s_max": max(rates),
            "cpu_us_per_event": _median([m.cpu_us_per_event for m in runs]),
            "peak_rss_mb": max(m.peak_rss_mb for m in runs),
            **extras,
        }
    rate = {name: v["events_per_s_median"] for name, v in variants.items()}
    ratios = {
        f"{a.upper()}/{b.upper()}": rate[a] / rate[b]
        for a, b in (("p", "b1"), ("b2", "b1"), ("p", "b2"), ("p", "f"), ("p2", "p"))
        if a in rate and b in rate and rate[b]
    }
    return {
        "options": {
            "events": options.events,
            "partitions": options.partitions,
            "rounds": options.rounds,
        },
        "variants": variants,
        "ratios": ratios,
    }


def render(summary: dict[str, Any]) -> str:
    """The table printed by ``respublica bench``."""
    lines = [
        f"{'variant':<8}{'events':>9}{'events/s (median)':>19}{'min..max':>19}"
        f"{'CPU µs/event':>14}{'peak RSS MiB':>14}{'delay p50/p99 s':>17}"
    ]
    for name, v in summary["variants"].items():
        delay = (
            f"{v['release_delay_p50_s']:.2f}/{v['release_delay_p99_s']:.2f}"
            if "release_delay_p50_s" in v
            else "-"
        )
        spread = f"{v['events_per_s_min']:,.0f}..{v['events_per_s_max']:,.0f}"
        lines.append(
            f"{name.upper():<8}{v['events']:>9,}{v['events_per_s_median']:>19,.0f}"
            f"{spread:>19}{v['cpu_us_per_event']:>14.1f}{v['peak_rss_mb']:>14.1f}"
            f"{delay:>17}"
        )
    lines.append("ratios: " + ", ".join(f"{k} = {v:.2f}" for k, v in summary["ratios"].items()))
    for name, v in summary["variants"].items():
        if "groups_expected" in v:
            verdict = "equal in every round" if v["oracle_equal"] else "NOT equal"
            lines.append(
                f"{name.upper()} vs the oracle (availability groups >= k): {verdict}; "
                f"{v['groups_matching']:,.0f} of {v['groups_expected']:,.0f} matching, "
                f"{v['groups_missing']:,.0f} missing, {v['groups_wrong']:,.0f} wrong, "
                f"{v['duplicates']:,.0f} duplicates (medians over rounds)"
            )
        elif v.get("oracle_equal"):
            lines.append(f"{name.upper()} vs the oracle: every release equal, every round")
    return "\n".join(lines)
