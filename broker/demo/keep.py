"""``respublica demo --keep`` and ``--stop``: leave the demo running, say how to use it, stop it.

Without ``--keep`` the demo's local broker lives in a temporary folder and goes with the run,
so the analyst's commands have nothing to read afterwards; ``next_steps`` then says so.
With ``--keep``:

* the local broker lives in ``<out>/demo/kafka`` and keeps running (an external cluster,
  ``KAFKA_BOOTSTRAP`` or ``RESPUBLICA_KAFKA_CONFIG``, is used as it is and never stopped);
* the policy worker keeps running, and the HTTP gateway is started as ``respublica gateway``
  on the wall clock (its schema endpoint and metrics; the demo's own gateway followed the
  simulated clock and ends with the run);
* on the local broker, the contracts' ACLs are applied and each contract's first consumer
  gets a SCRAM user and a client config (``<out>/demo/kept/<name>.kafka.yaml``); the
  micromobility's is the city analyst the printed commands run as, with credentials only;
* ``respublica web`` serves the map of the views, with the analyst's credentials (so it shows
  what the analyst may read), and its address is printed;
* ``<out>/demo/kept.json`` records the processes; ``respublica demo --stop`` ends exactly
  those (each checked by its command line first) and stops the broker.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import urllib.error
import urllib.request
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path

import yaml

from broker.deadline import wait_for
from broker.ingest.auth import hash_token
from broker.kafka import acls, users
from broker.kafka.local import (
    LocalKafka,
    LocalKafkaConfig,
    free_port_pair,
    job_cluster,
    process_alive,
    terminate,
)
from broker.kafka.settings import KafkaSettings, configured_elsewhere
from broker.processes import Child
from contracts.errors import RespublicaError
from contracts.model import Contract

KEPT_FILE = "kept.json"
OPERATOR = "admin"
"""Who runs the printed audit: the ``respublica-auditor`` user cannot see ``ingest.`` topics,
which the audit checks, and would report them missing."""
STOP_TIMEOUT_S = 30.0


class KeepError(RespublicaError):
    """A kept demo cannot be started or stopped."""


@dataclass(frozen=True)
class Kept:
    """What ``--keep`` left running, where, and with which credentials (kept.json)."""

    out: str
    contracts: list[str]
    mobility: str
    kafka: str
    kafka_data_dir: str | None
    worker_pid: int
    worker_metrics: str
    gateway_pid: int
    gateway_url: str
    gateway_metrics: str
    web_pid: int
    web_url: str
    markers: dict[str, str]
    analyst_config: str | None = None
    operator_config: str | None = None


@contextmanager
def demo_cluster(workdir: Path, keep: bool) -> Iterator[tuple[KafkaSettings, bool, Path | None]]:
    """``(settings, external, data dir)``: ``job_cluster``, except that with ``keep`` the
    local broker lives in ``workdir/kafka`` and outlives the run (stopped on failure only)."""
    if not keep or configured_elsewhere():
        with job_cluster("demo") as (kafka, external):
            yield kafka, external, None
        return
    data = (workdir / "kafka").resolve()
    if LocalKafka(LocalKafkaConfig(data_dir=data)).status().running:
        msg = (
            f"a kept demo still runs on {data}: stop it first with "
            f"`respublica demo --stop --out {workdir.parent}`"
        )
        raise KeepError(msg)
    shutil.rmtree(data, ignore_errors=True)  # a run never meets an earlier run's topics
    # A loaded laptop may need more than the usual minute to start a broker.
    config = LocalKafkaConfig(port=free_port_pair(), data_dir=data, start_timeout_s=180)
    broker = LocalKafka(config)
    broker.start()
    try:
        yield broker.settings(), False, data
    except BaseException:
        broker.stop()
        raise


def keep_services(
    kafka: KafkaSettings,
    data_dir: Path | None,
    contracts: Sequence[Contract],
    workdir: Path,
    worker: Child,
    worker_port: int,
    worker_group: str,
) -> Kept:
    """Start the wall-clock gateway, give the analyst credentials, start the web map with
    them, and write kept.json."""
    workdir = workdir.resolve()
    private = workdir / "kept"  # credentials, apart from the contract files beside them
    private.mkdir(mode=0o700, exist_ok=True)
    gateway_port, metrics_port = free_port_pair(), free_port_pair()
    tokens = _provider_token(private, contracts)
    gateway = Child(
        [
            "-m",
            "broker.cli",
            "gateway",
            "--contracts",
            *[str(Path(str(c.source)).resolve()) for c in contracts],
            "--tokens",
            str(tokens),
            "--port",
            str(gateway_port),
            "--metrics-port",
            str(metrics_port),
            "--log-level",
            "warning",
        ],
        workdir / "gateway.log",
        kafka.environ(),
    )
    url = f"http://127.0.0.1:{gateway_port}"
    try:
        wait_for(lambda: _answers(f"{url}/healthz", gateway), 60, "the gateway to answer")
    except BaseException:
        gateway.stop()
        raise
    mobility = next(c for c in contracts if c.id.startswith("lyon-micromobility"))
    kept = Kept(
        out=str(workdir.parent),
        contracts=[c.id for c in contracts],
        mobility=mobility.id,
        kafka=kafka.bootstrap,
        kafka_data_dir=None if data_dir is None else str(data_dir),
        worker_pid=worker.pid,
        worker_metrics=f"http://127.0.0.1:{worker_port}/metrics",
        gateway_pid=gateway.pid,
        gateway_url=url,
        gateway_metrics=f"http://127.0.0.1:{metrics_port}/metrics",
        web_pid=0,
        web_url="",
        markers={"worker": worker_group, "gateway": str(tokens)},
    )
    try:
        if data_dir is not None:  # our own broker: run the commands as the parties would
            kept = _with_credentials(kept, kafka, contracts, mobility, private, data_dir)
        kept = _with_web(kept, kafka, contracts, workdir)
    except BaseException:
        gateway.stop()
        raise
    (workdir / KEPT_FILE).write_text(json.dumps(asdict(kept), indent=2) + "\n", encoding="utf-8")
    return kept


def _with_web(
    kept: Kept, kafka: KafkaSettings, contracts: Sequence[Contract], workdir: Path
) -> Kept:
    """``respublica web`` on the kept views: as the analyst if it has credentials, else with
    the demo's own client settings (a configured cluster)."""
    port = free_port_pair()
    credentials = ["--kafka-config", kept.analyst_config] if kept.analyst_config else []
    web = Child(
        [
            "-m",
            "broker.cli",
            "web",
            *[a for c in contracts for a in ("--contracts", str(Path(str(c.source)).resolve()))],
            *credentials,
            "--port",
            str(port),
            "--log-level",
            "warning",
        ],
        workdir / "web.log",
        {} if kept.analyst_config else kafka.environ(),
    )
    url = f"http://127.0.0.1:{port}/"
    try:
        wait_for(lambda: _answers(f"{url}healthz", web), 60, "the web map to answer")
    except BaseException:
        web.stop()
        raise
    markers = {**kept.markers, "web": str(port)}
    return Kept(**{**asdict(kept), "web_pid": web.pid, "web_url": url, "markers": markers})


def _provider_token(folder: Path, contracts: Sequence[Contract]) -> Path:
    """A tokens file for the kept gateway (hash only), the token itself in a 0600 file."""
    token = secrets.token_urlsafe(24)
    secret = folder / "provider.token"
    secret.unlink(missing_ok=True)
    descriptor = os.open(secret, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
        handle.write(token + "\n")
    grants = {
        "providers": [
            {
                "id": "demo-provider",
                "token_sha256": hash_token(token),
                "contracts": [c.id for c in contracts],
            }
        ]
    }
    tokens = folder / "tokens.yaml"
    tokens.write_text(yaml.safe_dump(grants, sort_keys=False), encoding="utf-8")
    return tokens


def _answers(url: str, child: Child) -> bool:
    child.check_alive()
    try:
        with urllib.request.urlopen(url, timeout=2) as response:  # noqa: S310  # our loopback URL
            return bool(response.status)
    except urllib.error.HTTPError:
        return True  # 503 degraded still answers
    except OSError:
        return False


def _with_credentials(
    kept: Kept,
    kafka: KafkaSettings,
    contracts: Sequence[Contract],
    mobility: Contract,
    folder: Path,
    data_dir: Path,
) -> Kept:
    """The contracts' ACLs, and a SCRAM user with its client config for each contract's first
    consumer (``<name>.kafka.yaml``); the mobility's is the analyst of the printed commands."""
    with acls.AclAdmin(kafka) as admin:
        try:
            acls.apply(admin, acls.plan(admin, contracts))
        except acls.NoAuthorizer:
            return kept
    configs: dict[str, Path] = {}
    with users.ScramUsers(kafka) as scram:
        for contract in contracts:
            if not contract.consumers:
                continue
            name = contract.consumers[0].principal.removeprefix("User:")
            password = users.new_password()
            scram.upsert(name, password)
            configs[contract.id] = users.write_client_config(
                folder / f"{name}.kafka.yaml", users.client_config(kafka, name, password)
            )
    config = configs[mobility.id]
    operator = LocalKafkaConfig(data_dir=data_dir).client_config(OPERATOR)
    return Kept(**{**asdict(kept), "analyst_config": str(config), "operator_config": str(operator)})


def next_steps(
    kept: Kept | None, out: Path, contracts: Sequence[Contract], *, external: bool
) -> list[str]:
    """What to try next, with exact addresses. Without ``kept``: on a temporary local broker,
    that there is nothing left to read; on an external cluster, the commands that still work
    (the views stay on it)."""
    mobility = next(c.id for c in contracts if c.id.startswith("lyon-micromobility"))
    if kept is None and not external:
        return [
            "The demo's broker is gone (it was temporary), so `respublica export`, `subscribe` "
            "and `audit` have nothing to read now.",
            "Keep it and its services running with `make demo KEEP=1` "
            "(or `respublica demo --keep`): the commands to try are then printed here.",
        ]
    if kept is None:
        lines = [
            "The views stay on the configured cluster (the worker and gateway have stopped; "
            "--keep keeps them). Try next:"
        ]
    else:
        lines = [
            f"Kept running (stop them all with: respublica demo --stop --out {out}, "
            "or make demo-stop):",
            f"  Kafka         {kept.kafka}"
            + (f" (TLS + SCRAM; data {kept.kafka_data_dir})" if kept.kafka_data_dir else ""),
            f"  worker        pid {kept.worker_pid}, metrics {kept.worker_metrics}",
            f"  gateway       pid {kept.gateway_pid}, {kept.gateway_url} "
            f"(schema endpoint), metrics {kept.gateway_metrics}",
            f"  web map       pid {kept.web_pid}, {kept.web_url} (open it in a browser: "
            f"the map of each view {_reader(kept)} may read)",
            "Try next (the city analyst needs no contract file: the contracts are on the broker):",
        ]
        if kept.analyst_config:
            lines.append(f"  export RESPUBLICA_KAFKA_CONFIG={_shown(kept.analyst_config, out)}")
    lines += [
        f"  respublica subscribe {mobility} availability --from-beginning --max-windows 3",
        f"  respublica export {mobility} origin_destination --format geojson --out od.geojson",
    ]
    if kept is not None:
        lines.append(f"  curl -s {kept.gateway_url}/subjects")
        lines.append(f"  curl -s {kept.web_url}api/views")
    operator = ""
    if kept is not None and kept.operator_config:
        operator = f" --kafka-config {_shown(kept.operator_config, out)}"
    lines.append(
        f"  respublica audit {mobility} --contracts {out / 'demo'}{operator} --format md "
        "--out audit.md"
    )
    if kept is not None:
        lines.append(f"  curl -s {kept.worker_metrics} | grep ^respublica_")
    else:
        lines += [
            "The map of the views (then open http://127.0.0.1:8090/; Ctrl-C stops it):",
            f"  respublica web --contracts {out / 'demo'}",
        ]
    return lines


def _reader(kept: Kept) -> str:
    """Whose views the kept web map shows."""
    if not kept.analyst_config:
        return "the demo's Kafka client"
    return Path(kept.analyst_config).name.removesuffix(".kafka.yaml")


def _shown(path: str | None, out: Path) -> str:
    """A kept path as the user gave ``out`` (relative stays relative)."""
    if path is None:
        return ""
    absolute, root = Path(path), out.resolve()
    return str(out / absolute.relative_to(root)) if absolute.is_relative_to(root) else path


def stop_kept(out: Path) -> list[str]:
    """End what ``--keep`` left running under ``out``; returns what was done."""
    record = out / "demo" / KEPT_FILE
    try:
        kept = Kept(**json.loads(record.read_text(encoding="utf-8")))
    except FileNotFoundError:
        msg = f"no kept demo under {out} ({record} is missing)"
        raise KeepError(msg) from None
    except (ValueError, TypeError) as exc:
        msg = f"{record} is not a kept demo's record"
        raise KeepError(msg) from exc
    done = []
    services = (
        ("worker", "worker", kept.worker_pid),
        ("gateway", "gateway", kept.gateway_pid),
        ("web", "web map", kept.web_pid),
    )
    for marker, name, pid in services:
        if _ours(pid, kept.markers.get(marker, "")):
            terminate(pid, STOP_TIMEOUT_S)
            done.append(f"stopped the {name} (pid {pid})")
        else:
            done.append(f"the {name} (pid {pid}) was no longer running")
    if kept.kafka_data_dir is not None:
        stopped = LocalKafka(LocalKafkaConfig(data_dir=Path(kept.kafka_data_dir))).stop()
        state = "stopped" if stopped else "was no longer running"
        done.append(f"the Kafka broker ({kept.kafka_data_dir}) {state}")
    record.unlink()
    return done


def _ours(pid: int, marker: str) -> bool:
    """Whether ``pid`` still runs the demo's process (its command line names ``marker``), not
    another program that was given the pid since."""
    if not marker or not process_alive(pid):
        return False
    try:
        command = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return False
    return b"broker.cli" in command and marker.encode() in command
