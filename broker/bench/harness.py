"""``respublica bench``: rounds of B1, B1A, B2, P, F, P2 and PA on the same broker, then ratios.

The input is a copy of a contract (``--contract FILE``, a copy of a bundled example; default
the micromobility example) with events simulated for its streams (``broker/bench/preload.py``).
Each round preloads a fresh copy's raw topics, then runs every variant over the same bytes,
each in its own process(es):

* B1 / B1A / B2 (``broker/bench/variants.py``; B1A: B1 on the worker loops' aiokafka
  consumer) read the contract's first simulated raw topic and report their own timings, from
  their first polled record; F (``broker/bench/faust_plain.py``) runs only for the
  micromobility example's availability view, the only one it implements;
* P runs ``respublica worker --processes 1`` (the real code path, every view of the
  contract), PK the same with ``--consumer kafka-python``, P2 two such workers, PA one
  ``respublica worker --processes auto`` (one process per core, supervised), each on a fresh
  copy. A P variant is timed from the first raw record a worker process polled
  (``respublica_worker_first_record_timestamp_seconds``) to the timestamp of the last release it
  sent to a public topic; its CPU is that of every worker process between those instants
  (sampled from ``/proc`` every 50 ms). Its releases must equal the batch oracle before any
  number is reported.
"""

from __future__ import annotations

import bisect
import contextlib
import json
import statistics
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kafka import KafkaAdminClient, KafkaConsumer, TopicPartition
from kafka.admin import NewTopic

from broker.bench.preload import BenchInput, BenchSource, load_source, preload
from broker.bench.verify import expected_windows, read_public
from broker.deadline import Deadline, wait_for
from broker.kafka import topics
from broker.kafka.clients import KafkaKeysLog, WorkerClients, read_to_end
from broker.kafka.local import free_port_pair
from broker.kafka.settings import KafkaSettings, as_settings
from broker.processes import (
    BenchError,
    Child,
    cpu_seconds,
    histogram_quantile,
    metric_sum,
    peak_rss_mb,
    scrape,
)
from broker.worker.keyrecords import MasterKeys
from broker.worker.keystore import KeyStore
from contracts.model import Contract
from policies.oracle import evaluate
from policies.pseudonymise import KeyRing

MASTER_KEY = "42" * 32
DEADLINE_S = 1800.0
FAUST_STREAM = "vehicle_events"


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
    contract: Path | None = None  # a copy of a bundled example; None: micromobility
    allow_outside: bool = False  # the contract may read files outside its folder


def _sink(bootstrap: str, name: str, partitions: int) -> str:
    admin = KafkaAdminClient(**as_settings(bootstrap).kafka_python("bench"))
    try:
        admin.create_topics([NewTopic(name, partitions, 1)])
    finally:
        admin.close()
    return name


def run_baseline(variant: str, bootstrap: str, inp: BenchInput, workdir: Path) -> Measurement:
    """B1 or B2 in its own process over the main stream's events (and end-of-stream marks)."""
    contract, stream = inp.contract, inp.contract.stream(inp.main_stream)
    schema = workdir / f"{stream.name}.avsc"
    schema.write_text(json.dumps(stream.raw_schema))
    result = workdir / f"{variant}-{uuid.uuid4().hex[:6]}.json"
    sink = _sink(bootstrap, f"bench.{contract.id}.{variant}.{uuid.uuid4().hex[:6]}", inp.partitions)
    records = inp.main_events + stream.partitions
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
    contract, stream = inp.contract, inp.contract.stream(FAUST_STREAM)
    result = workdir / f"f-{uuid.uuid4().hex[:6]}.json"
    app_id = f"bench-faust-{uuid.uuid4().hex[:8]}"
    sink = _sink(bootstrap, f"bench.{contract.id}.f.{uuid.uuid4().hex[:6]}", 1)
    env = {
        "BENCH_SCHEMA": json.dumps(stream.raw_schema),
        "BENCH_EVENTS": str(inp.main_events),
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
        inp.main_events,
        float(data["seconds"]),
        float(data["cpu_seconds"]),
        float(data["peak_rss_mb"]),
        check_faust(bootstrap, sink, inp),
    )


def _end(consumer: KafkaConsumer, tp: TopicPartition) -> int:
    return int(consumer.end_offsets([tp])[tp])


def _settled(bootstrap: str, topic: str, quiet_s: float = 3.0, timeout_s: float = 60.0) -> None:
    """Wait until ``topic`` got a record and then nothing for ``quiet_s`` (at most
    ``timeout_s``): F publishes from a wall-clock timer, late on a loaded machine."""
    consumer = KafkaConsumer(**as_settings(bootstrap).kafka_python("bench"), group_id=None)
    tp = TopicPartition(topic, 0)
    try:
        last, since = _end(consumer, tp), time.monotonic()
        deadline = since + timeout_s
        while time.monotonic() < deadline and (not last or time.monotonic() - since < quiet_s):
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


# The worker processes of each P variant: one worker with one process, two workers with one
# each, one worker with one process per core (the supervisor).
POLICY_PROCESSES = {"p": ("1",), "p2": ("1", "1"), "pa": ("auto",), "pk": ("1",)}
# PK: P consuming with kafka-python (``respublica worker --consumer kafka-python``), as every
# P did before issue 17 session 4: the same-run comparison of the loops' two clients.
POLICY_CONSUMER = {"pk": "kafka-python"}
SAMPLE_S = 0.05  # CPU samples (cheap: /proc)
SCRAPE_S = 0.5  # /metrics scrapes (not cheap: the worker renders, a supervisor merges)


@contextmanager
def _workers(
    bootstrap: str, inp: BenchInput, processes: tuple[str, ...], workdir: Path, name: str
) -> Iterator[list[tuple[Child, int]]]:
    group = f"bench-{uuid.uuid4().hex[:8]}"
    started: list[tuple[Child, int]] = []
    try:
        for i, count in enumerate(processes):
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
                "--processes",
                count,
                "--log-level",
                "warning",
                "--consumer",
                POLICY_CONSUMER.get(name, "aiokafka"),
            ]
            child = Child(
                args,
                workdir / f"{name}-{i}.log",
                {"RESPUBLICA_MASTER_KEY": MASTER_KEY, "TMPDIR": str(workdir)},
            )
            started.append((child, port))
        yield started
    finally:
        for child, _ in started:
            child.stop()


def child_pids(pid: int) -> list[int]:
    """The children of ``pid`` (a supervisor's worker processes), from ``/proc``."""
    try:
        text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    except OSError:
        return []
    return [int(p) for p in text.split()]


class CpuTimeline:
    """CPU seconds of some processes and their children, sampled on the wall clock, so that
    the CPU spent between two instants the workers report can be read afterwards."""

    def __init__(self, roots: list[int]) -> None:
        self.roots = roots
        self.samples: list[tuple[float, float]] = []

    def pids(self) -> list[int]:
        return [p for root in self.roots for p in (root, *child_pids(root))]

    def workers(self) -> int:
        """Worker processes: a supervisor's children, or the process itself."""
        return sum(len(child_pids(root)) or 1 for root in self.roots)

    def sample(self) -> None:
        total = 0.0
        for pid in self.pids():
            with contextlib.suppress(OSError, IndexError):  # it just exited
                total += cpu_seconds(pid)
        self.samples.append((time.time(), total))

    def at(self, when: float) -> float:
        """CPU seconds at ``when`` (linear between the samples around it)."""
        times = [t for t, _ in self.samples]
        i = bisect.bisect_left(times, when)
        if i == 0:
            return self.samples[0][1]
        if i == len(self.samples):
            return self.samples[-1][1]
        (t1, c1), (t2, c2) = self.samples[i - 1], self.samples[i]
        return c1 + (c2 - c1) * (when - t1) / (t2 - t1) if t2 > t1 else c2

    def peak_rss_mb(self) -> float:
        """The largest peak RSS of one process (each process holds its own state)."""
        peaks = [0.0]
        for pid in self.pids():
            with contextlib.suppress(OSError):
                peaks.append(peak_rss_mb(pid))
        return max(peaks)


def metric_values(text: str, name: str) -> list[float]:
    """Every sample of ``name`` (one per process under a supervisor)."""
    return [
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith((name + "{", name + " "))
    ]


def noise_key(bootstrap: str, contract: Contract) -> bytes | None:
    """The contract's shared noise key, for the oracle of its noised views (None: no noise)."""
    if not any(view.noise for view in contract.views):
        return None
    settings = WorkerClients(KafkaSettings.load(bootstrap=bootstrap), "bench", "bench-keys")
    log = KafkaKeysLog(settings, topics.keys_topic(contract))
    try:
        masters = MasterKeys(bytes.fromhex(MASTER_KEY))
        return KeyStore(contract.id, log, masters, "bench").noise_key()
    finally:
        log.close()


def run_policy(bootstrap: str, inp: BenchInput, workdir: Path, variant: str = "p") -> Measurement:
    """A P variant: the real worker, timed from its first polled record to the last release
    it sent, checked against the oracle."""
    contract = inp.contract
    views = [view.name for view in contract.views]
    total_windows = sum(len(expected_windows(contract, inp.events, v)) for v in views)
    with _workers(bootstrap, inp, POLICY_PROCESSES[variant], workdir, variant) as procs:
        timeline = CpuTimeline([child.pid for child, _ in procs])

        def texts() -> list[str]:
            for child, _ in procs:
                child.check_alive()
            return [scrape(port) for _, port in procs]

        final = _until_released(timeline, texts, total_windows)
        rss = timeline.peak_rss_mb()
        processes = timeline.workers()
    first = [v for t in final for v in metric_values(t, FIRST_RECORD) if v > 0]
    key = noise_key(bootstrap, contract)
    last_ms = 0
    for view in views:
        expected = expected_windows(contract, inp.events, view, key)
        got = read_public(bootstrap, contract, view)
        if got.windows != expected or got.duplicates:
            msg = (
                f"{variant.upper()}'s releases of {view} differ from the oracle "
                f"({len(got.windows)} vs {len(expected)} windows, {got.duplicates} duplicates)"
            )
            raise BenchError(msg)
        last_ms = max(last_ms, got.last_timestamp_ms)
    t0, t1 = min(first), last_ms / 1000
    delay = "respublica_window_release_delay_seconds"
    return Measurement(
        variant,
        inp.total,
        t1 - t0,
        timeline.at(t1) - timeline.at(t0),
        rss,
        {
            "windows": total_windows,
            "processes": processes,
            "oracle_equal": True,
            "release_delay_p50_s": histogram_quantile(final, delay, 0.5),
            "release_delay_p99_s": histogram_quantile(final, delay, 0.99),
        },
    )


FIRST_RECORD = "respublica_worker_first_record_timestamp_seconds"


def _until_released(
    timeline: CpuTimeline, texts: Callable[[], list[str]], total_windows: int
) -> list[str]:
    """Sample CPU until the workers say every window is released; their last metrics."""
    deadline = Deadline(DEADLINE_S)
    scraped = 0.0
    while not deadline.expired():
        timeline.sample()
        if time.monotonic() - scraped >= SCRAPE_S:
            scraped = time.monotonic()
            final = texts()
            released = sum(metric_sum(t, "respublica_windows_released_total") for t in final)
            if released >= total_windows:
                timeline.sample()
                return final
        time.sleep(SAMPLE_S)
    msg = f"not every window was released within {DEADLINE_S:.0f} s"
    raise BenchError(msg)


def f_applies(source: BenchSource) -> bool:
    """F implements the micromobility example's availability view, and nothing else."""
    return source.main_stream == FAUST_STREAM and source.is_example_view("availability")


def run_round(bootstrap: str, options: BenchOptions, source: BenchSource) -> list[Measurement]:
    """Each variant once, P variants on a fresh copy each (the others on the first)."""
    inp = preload(bootstrap, options.workdir, source, options.partitions)
    fresh = False  # a worker run leaves checkpoints and state: the next P gets a new copy
    out: list[Measurement] = []
    for variant in options.variants:
        if variant in ("b1", "b1a", "b2"):
            out.append(run_baseline(variant, bootstrap, inp, options.workdir))
        elif variant == "f":
            if not f_applies(source):
                continue
            out.append(run_faust(bootstrap, inp, options.workdir))
        elif variant in POLICY_PROCESSES:
            if fresh:
                inp = preload(bootstrap, options.workdir, source, options.partitions)
            out.append(run_policy(bootstrap, inp, options.workdir, variant))
            fresh = True
        print(f"  {out[-1].variant:>3}: {out[-1].events_per_s:>10,.0f} events/s", flush=True)
    return out


def run(bootstrap: str, options: BenchOptions) -> dict[str, Any]:
    """Every round, then the summary (medians) and ratios."""
    options.workdir.mkdir(parents=True, exist_ok=True)
    source = load_source(options.contract, options.events, allow_outside=options.allow_outside)
    print(
        f"contract {source.contract.id} ({source.simulator} simulator): "
        + ", ".join(f"{len(rows):,} {name}" for name, rows in source.events.items())
        + f"; views {', '.join(v.name for v in source.contract.views)}",
        flush=True,
    )
    if "f" in options.variants and not f_applies(source):
        print("  F skipped: it implements only the micromobility example's availability view")
    rounds: list[list[Measurement]] = []
    for number in range(options.rounds):
        print(f"round {number + 1}/{options.rounds}", flush=True)
        rounds.append(run_round(bootstrap, options, source))
    return summarise(rounds, options, source)


RATIOS = (
    ("p", "b1"),
    ("b1a", "b1"),
    ("p", "b1a"),
    ("pk", "b1"),
    ("p", "pk"),
    ("b2", "b1"),
    ("p", "b2"),
    ("p", "f"),
    ("p2", "p"),
    ("pa", "b1"),
    ("pa", "p"),
)


def _median(values: list[float]) -> float:
    return statistics.median(values) if values else 0.0


def summarise(
    rounds: list[list[Measurement]], options: BenchOptions, source: BenchSource
) -> dict[str, Any]:
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
        for a, b in RATIOS
        if a in rate and b in rate and rate[b]
    }
    return {
        "options": {
            "contract": str(options.contract or "micromobility example"),
            "simulator": source.simulator,
            "views": [view.name for view in source.contract.views],
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
            processes = f" ({v['processes']:.0f} processes)" if v.get("processes", 1) > 1 else ""
            lines.append(
                f"{name.upper()}{processes} vs the oracle: every release equal, every round"
            )
    return "\n".join(lines)
