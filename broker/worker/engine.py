"""The policy worker: raw events in, releases of every active contract's views out.

Start reading here. ``Engine`` is the composition root (no faust needed, tests drive it):
it checks the cluster, loads the shared keys, compiles each contract, and runs two loops per
contract, each in that contract's own consumer group (contracts are the isolation unit):

* ``rawloop.RawLoop`` → ``partials.PartialsStage`` per stream of the contract;
* ``mergeloop.MergeLoop`` → ``merge.MergeStage`` per view of the contract.

``build_app`` wraps an engine in a faust-streaming app: faust gives the process its life
cycle (signals, graceful stop, logging) and its web server (``/healthz``, ``/metrics``).
The design and the exactly-once argument are in ``docs/architecture.md``.
"""

from __future__ import annotations

import logging
import secrets
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from broker.kafka import topics
from broker.kafka.clients import (
    DEFAULT_LOOP_CLIENT,
    KafkaKeysLog,
    LoopClient,
    WorkerClients,
    WorkerError,
)
from broker.kafka.defaults import WORKER_GROUP
from broker.kafka.health import Health, combine
from broker.kafka.internal import source_name
from broker.kafka.probe import KafkaProbe
from broker.kafka.settings import KafkaSettings
from broker.worker.keyrecords import MasterKeys, RejectReason
from broker.worker.keystore import KeyStore
from broker.worker.merge import DEFAULT_STATE_INTERVAL_S, MergeOutput, MergeStage
from broker.worker.mergeloop import MergeLoop
from broker.worker.metrics import WorkerMetrics
from broker.worker.partials import PartialsStage
from broker.worker.rawloop import RawLoop
from contracts.model import Contract
from policies.base import END_OF_STREAM, NO_WATERMARK
from policies.compile import CompiledView, compile_contract

_log = logging.getLogger(__name__)
WORKER_TOPIC_PREFIXES = ("raw.", "public.", "respublica.")


@dataclass(frozen=True)
class WorkerConfig:
    """What one worker process runs, and how."""

    kafka_settings: KafkaSettings
    worker_id: str
    group: str = WORKER_GROUP
    web_port: int | None = 6066
    web_host: str = "127.0.0.1"
    web_socket: Path | None = None  # serve on this Unix socket instead (supervised children)
    checkpoint_interval_s: float = 1.0
    state_interval_s: float = DEFAULT_STATE_INTERVAL_S
    max_records: int = 2000
    loop_client: LoopClient = DEFAULT_LOOP_CLIENT  # what the loops consume with

    @property
    def kafka(self) -> WorkerClients:
        """Client settings shared by every consumer and producer of the worker."""
        return WorkerClients(
            self.kafka_settings, f"worker-{self.worker_id}", self.group, self.loop_client
        )


def active_contracts(contracts: Sequence[Contract], now: datetime) -> list[Contract]:
    """Contracts valid now; a contract that starts later takes effect on a restart."""
    active = [c for c in contracts if c.is_active(now)]
    for contract in contracts:
        if contract not in active:
            _log.warning("contract %s v%d is not valid now: not run", contract.id, contract.version)
    return active


def check_topics(kafka: KafkaSettings, contracts: Sequence[Contract]) -> None:
    """Fail early and clearly: cluster unreachable, topics missing or partitioned wrongly.

    Only the topics the worker uses: its own principal may not even describe the provider
    input (``ingest.``) or the rejections (``dlq.``), so those would look missing.
    """
    specs = [
        s
        for c in contracts
        for s in topics.contract_topics(c)
        if s.name.startswith(WORKER_TOPIC_PREFIXES)
    ]
    with topics.TopicAdmin(kafka) as admin:
        live = admin.partitions([s.name for s in specs])
    missing = [s.name for s in specs if s.name not in live]
    if missing:
        msg = (
            f"{len(missing)} topic(s) missing, e.g. {missing[0]}: "
            "run `respublica apply` for these contracts first"
        )
        raise WorkerError(msg)
    wrong = [s.name for s in specs if live[s.name] != s.partitions]
    if wrong:
        msg = f"topic {wrong[0]} does not have the partitions its contract says"
        raise WorkerError(msg)


class Engine:
    """One worker's stages and loops (see the module docstring)."""

    def __init__(
        self,
        config: WorkerConfig,
        contracts: Sequence[Contract],
        masters: MasterKeys,
        metrics: WorkerMetrics | None = None,
        *,
        merge_fault: Callable[[str, MergeOutput], None] | None = None,
    ) -> None:
        self.config = config
        self.contracts = {c.id: c for c in contracts}
        self.masters = masters
        self.metrics = metrics or WorkerMetrics()
        self.keystores: dict[str, KeyStore] = {}
        self.compiled: dict[str, dict[str, CompiledView]] = {}
        self.raw_loops: list[RawLoop] = []
        self.merge_loops: list[MergeLoop] = []
        self._logs: list[KafkaKeysLog] = []
        self.probe: KafkaProbe | None = None
        self._stop_lock = threading.Lock()
        self._merge_fault = merge_fault  # tests: fail between sending releases and commit

    def prepare(self) -> None:
        """Check the cluster and load the keys: every startup error surfaces here, clearly."""
        if self.compiled:
            return
        check_topics(self.config.kafka_settings, list(self.contracts.values()))
        now = now_utc()
        for contract in self.contracts.values():
            self._compile(contract)
            self.metrics.serve(contract, now)

    def start(self) -> None:
        """Prepare (if not done), then start a raw and a merge loop per contract.

        One loop per contract and stage, not one consumer for all: a consumer is a member of
        one group, and each contract has its own groups (``WorkerClients.raw_group``).
        """
        self.prepare()
        for contract in self.contracts.values():
            self._build_loops(contract)
        first = next(iter(self.contracts.values()), None)
        if first is not None:  # the worker may describe its contracts' keys topics
            self.probe = KafkaProbe(
                self.config.kafka_settings, self.config.kafka.role, topics.keys_topic(first)
            ).start()
        for loop in self.loops():
            loop.kafka_reachable = self._kafka_reachable
            loop.start()
        _log.info(
            "worker %s started: %d contract(s), %d view(s)",
            self.config.worker_id,
            len(self.contracts),
            sum(len(c.views) for c in self.contracts.values()),
        )

    def _build_loops(self, contract: Contract) -> None:
        partials = {
            topics.partials_topic(contract, v): topics.state_topic(contract) for v in contract.views
        }
        merge: MergeLoop | None = None
        if partials:
            merge = MergeLoop(
                self.config.kafka,
                self._merge_stage,
                partials,
                partials,
                contract=contract.id,
                progress=self._progress,
                metrics=self.metrics,
                fault=self._merge_fault,
            )
            self.merge_loops.append(merge)
        stages = self._partials_stages(contract)
        if stages:
            self.raw_loops.append(
                RawLoop(
                    self.config.kafka,
                    stages,
                    {contract.id: self.keystores[contract.id]},
                    self.metrics,
                    contract=contract.id,
                    checkpoint_interval_s=self.config.checkpoint_interval_s,
                    max_records=self.config.max_records,
                    merger_settled=None if merge is None else merge.settled,
                )
            )

    def _kafka_reachable(self) -> bool:
        return self.probe is not None and self.probe.state().reachable

    def _compile(self, contract: Contract) -> None:
        log = KafkaKeysLog(self.config.kafka, topics.keys_topic(contract))
        self._logs.append(log)
        # A writer id unique per process: a restarted worker never reuses a candidate key.
        writer = f"{self.config.worker_id}.{secrets.token_hex(4)}"
        rejected = self.metrics.key_records_rejected

        def count(reason: RejectReason) -> None:  # a forged or foreign record: never obeyed
            rejected.labels(contract.id, reason.value).inc()

        store = KeyStore(contract.id, log, self.masters, writer, on_reject=count)
        store.refresh()
        noise = store.noise_key() if any(v.noise for v in contract.views) else None
        self.keystores[contract.id] = store
        self.compiled[contract.id] = compile_contract(contract, keyring=store.ring, noise_key=noise)

    def _partials_stages(self, contract: Contract) -> dict[str, PartialsStage]:
        stages = {}
        for stream in contract.streams:
            views = {v.name: self.compiled[contract.id][v.name] for v in contract.views_of(stream)}
            if not views:
                continue
            stages[contract.topic_raw(stream)] = PartialsStage(
                contract,
                stream.name,
                views,
                {name: topics.partials_topic(contract, name) for name in views},
                self.metrics,
            )
        return stages

    def _merge_stage(self, partials_topic: str) -> MergeStage:
        for contract in self.contracts.values():
            for view in contract.views:
                if topics.partials_topic(contract, view) == partials_topic:
                    stream = contract.stream(view.stream)
                    sources = [source_name(p) for p in range(stream.partitions)]
                    return MergeStage(
                        contract,
                        self.compiled[contract.id][view.name],
                        sources,
                        topics.state_topic(contract),
                        self.metrics,
                        state_interval_s=self.config.state_interval_s,
                    )
        msg = f"no view reads {partials_topic}"
        raise WorkerError(msg)

    def _progress(self, stage: MergeStage) -> None:
        """A view's lowest watermark moved: keys no view still needs can be destroyed."""
        watermark = min(stage.merger.watermarks.values())
        if watermark in (NO_WATERMARK, END_OF_STREAM):
            return  # nothing seen yet, or a finished replay: says nothing about time
        contract = stage.contract
        policy = contract.pseudonymisation
        retention_ms = int(policy.key_retention.total_seconds() * 1000)
        rotation_ms = int(policy.rotation.total_seconds() * 1000)
        epoch = (watermark - retention_ms) // rotation_ms
        self.keystores[contract.id].progress(stage.view, epoch, [v.name for v in contract.views])

    def refresh_gauges(self, now: datetime) -> None:
        """Gauges that move with the clock alone: days to expiry, age of the oldest key."""
        for contract in self.contracts.values():
            self.metrics.catalogue.describe_contract(contract, now)
            store = self.keystores.get(contract.id)
            epoch = store.oldest_epoch() if store is not None else None
            if epoch is not None:
                started = epoch * contract.pseudonymisation.rotation.total_seconds()
                age = self.metrics.catalogue.key_epoch_age.labels(contract.id)
                age.set(max(0.0, now.timestamp() - started))

    def loops(self) -> list[RawLoop | MergeLoop]:
        """The running loops (a raw and a merge loop per contract)."""
        return [*self.raw_loops, *self.merge_loops]

    def failure(self) -> BaseException | None:
        """The error that stopped a loop, if any (the worker then exits)."""
        for loop in self.loops():
            if loop.error is not None:
                return loop.error
            if not loop.is_alive() and not loop.stopping.is_set():
                return WorkerError(f"{loop.name} stopped unexpectedly")
        return None

    def healthy(self) -> bool:
        """``/healthz`` says ok: every loop working, Kafka answering, no failure."""
        return self.health().ok

    def health(self) -> Health:
        """What ``/healthz`` says (``broker.kafka.health``): degraded within 5 s of losing
        Kafka (the probe) or while a loop backs off after an outage, ok once both resumed."""
        loops = self.loops()
        failure = self.failure()
        if failure is not None:
            return Health("degraded", "unknown", f"stopped on {type(failure).__name__}")
        failing = next((loop.failing for loop in loops if loop.failing is not None), None)
        started = bool(loops) and all(loop.is_alive() and loop.ready.is_set() for loop in loops)
        health = combine(self.probe, started=started or failing is not None, failing=failing)
        outages = {loop.name: loop.outages for loop in loops if loop.outages}
        return Health(health.status, health.kafka, health.reason, {"restarts": outages})

    def alive(self) -> bool:
        """``/livez``: no loop stopped for good (an outage being waited out is alive)."""
        return self.failure() is None

    def stop(self, timeout_s: float = 60.0) -> None:
        """Graceful stop: finish the batch, checkpoint, commit, leave the groups."""
        with self._stop_lock:
            for loop in self.loops():
                loop.stop()
            for loop in self.loops():
                loop.join(timeout_s)
            if self.probe is not None:
                self.probe.stop()
            for log in self._logs:
                log.close()
            self._logs = []


def now_utc() -> datetime:
    """The wall clock, aware (the shell's only clock read for contract validity)."""
    return datetime.now(UTC)
