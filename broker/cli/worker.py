"""``respublica worker``: run the policy worker of every active contract.

See ``broker/worker/engine.py``.
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from broker.cli.contracts import add_allow_outside_refs, default_contract_paths
from broker.cli.options import add_kafka_options, add_log_options, kafka_settings, setup_logging
from broker.kafka.defaults import WORKER_GROUP

if TYPE_CHECKING:
    from broker.worker.engine import Engine

# Copies of broker.worker.keystore's variables, whose module loads cryptography:
# `--help` must stay fast. tests/layout/test_cli_start.py checks that they agree.
MASTER_KEY_ENV = "RESPUBLICA_MASTER_KEY"
NEW_MASTER_KEY_ENV = "RESPUBLICA_NEW_MASTER_KEY"
# Copies of broker.kafka.clients.LoopClient's values, its default first.
LOOP_CLIENTS = ("aiokafka", "kafka-python")


def register(commands: Any) -> None:
    worker = commands.add_parser(
        "worker", help="run the policy worker: raw events in, contract views out"
    )
    worker.add_argument(
        "--contracts",
        type=Path,
        action="append",
        help="contract files or directories (default: $RESPUBLICA_CONTRACTS "
        "or the bundled examples); repeatable",
    )
    add_allow_outside_refs(worker)
    worker.add_argument(
        "--worker-id",
        default=None,
        help="name of this worker in logs and client ids (default: host-pid)",
    )
    add_kafka_options(worker)
    worker.add_argument(
        "--web-port",
        type=int,
        default=6066,
        help="port of /healthz and /metrics (0: no web server; default 6066)",
    )
    worker.add_argument("--web-host", default="127.0.0.1", help="web server address")
    worker.add_argument(
        "--master-key-file",
        type=Path,
        default=None,
        help=f"key-encryption key file (default: ${MASTER_KEY_ENV})",
    )
    worker.add_argument(
        "--new-master-key-file",
        type=Path,
        default=None,
        help=f"during a master-key rotation, the new key (default: ${NEW_MASTER_KEY_ENV}): "
        "new key records are sealed under it, records under either key are read "
        "(see `respublica keys rotate-master --help`)",
    )
    worker.add_argument(
        "--group",
        default=WORKER_GROUP,
        help="consumer-group stem of the workers of one deployment: the workers of contract "
        f"<c> form the groups <stem>.<c>.raw and <stem>.<c>.merge (default {WORKER_GROUP}; "
        "the ACLs `respublica apply` creates give the worker of <c> the groups prefixed "
        f"'{WORKER_GROUP}.<c>.' only)",
    )
    worker.add_argument(
        "--checkpoint-interval",
        type=float,
        default=1.0,
        help="seconds between stage-1 checkpoints (default 1)",
    )
    worker.add_argument(
        "--consumer",
        choices=LOOP_CLIENTS,
        default=LOOP_CLIENTS[0],
        help="the client the worker's loops consume with (default aiokafka: records parsed "
        "in C; kafka-python: the earlier pure-Python consumer)",
    )
    worker.add_argument(
        "--processes",
        type=_processes,
        default="auto",
        metavar="N|auto",
        help="worker processes to run in the same groups, supervised: a crashed one is "
        "restarted, SIGTERM stops all (default auto: the cores available to this process; "
        "1: this process alone, no supervisor)",
    )
    # Set by the supervisor on its children (--processes N > 1), not by people.
    worker.add_argument("--web-socket", type=Path, default=None, help=argparse.SUPPRESS)
    worker.add_argument("--parent-pid", type=int, default=None, help=argparse.SUPPRESS)
    add_log_options(worker)
    worker.set_defaults(handler=_worker)


def _processes(value: str) -> str | int:
    """``--processes``: ``auto`` or a count of at least 1."""
    if value == "auto":
        return value
    try:
        count = int(value)
    except ValueError:
        count = 0
    if count < 1:
        msg = f"expected 'auto' or a whole number >= 1, got {value!r}"
        raise argparse.ArgumentTypeError(msg)
    return count


def _worker(args: argparse.Namespace) -> int:
    from broker.worker.supervise import bind_to_parent

    # Until faust (or the supervisor) installs its own handler, SIGTERM stops a worker that is
    # still starting as a clean stop (exit 0): it has read contracts and checked topics, and
    # written nothing. Python's default would end it as killed by the signal (-15).
    signal.signal(signal.SIGTERM, _stop_while_starting)
    if args.parent_pid is not None:
        bind_to_parent(args.parent_pid)  # a supervised child dies with its supervisor
    setup_logging(args)
    engine = _engine(args)
    processes = _process_count(args.processes, engine)
    if processes > 1 and args.parent_pid is None:
        return _supervise(args, engine, processes)
    from broker.worker.app import run

    engine.prepare()  # before faust: a startup error is one line and exit code 1
    return run(engine, loglevel=args.log_level)


def _stop_while_starting(_signum: int, _frame: object) -> None:
    raise SystemExit(0)


def _process_count(wanted: str | int, engine: Engine) -> int:
    """``auto``: the cores available, at most one per raw partition (more would idle)."""
    if wanted != "auto":
        return int(wanted)
    from broker.worker.supervise import available_cores

    partitions = sum(
        stream.partitions
        for contract in engine.contracts.values()
        for stream in contract.streams
        if contract.views_of(stream)
    )
    return max(1, min(available_cores(), partitions))


def _engine(args: argparse.Namespace) -> Engine:
    from broker.worker.engine import Engine, WorkerConfig, active_contracts, now_utc
    from broker.worker.keystore import load_master_keys
    from contracts import load_contracts

    contracts = load_contracts(
        args.contracts or default_contract_paths(),
        now=now_utc(),
        allow_outside=args.allow_outside_refs,
    )
    masters = load_master_keys(args.master_key_file, args.new_master_key_file)
    config = WorkerConfig(
        kafka_settings=kafka_settings(args),
        worker_id=_worker_id(args),
        group=args.group,
        web_port=args.web_port or None,
        web_host=args.web_host,
        web_socket=args.web_socket,
        checkpoint_interval_s=args.checkpoint_interval,
        loop_client=args.consumer,
    )
    return Engine(config, active_contracts(contracts, now_utc()), masters)


def _worker_id(args: argparse.Namespace) -> str:
    return str(args.worker_id or f"{socket.gethostname()}-{os.getpid()}")


def _supervise(args: argparse.Namespace, engine: Engine, processes: int) -> int:
    """``--processes N``: check what a child would check at start (one clear line and exit 1
    rather than N children failing), then run N children under a supervisor."""
    from broker.worker.supervise import ServeOptions, Supervisor, supervise

    try:
        engine.prepare()  # the cluster, the topics, the keys (agreed once, here)
    finally:
        engine.stop()
    worker_id = _worker_id(args)
    supervisor = Supervisor(
        lambda index, path: child_command(args, f"{worker_id}.{index}", path, os.getpid()),
        processes,
    )
    return int(supervise(supervisor, ServeOptions(args.web_host, args.web_port)))


def child_command(
    args: argparse.Namespace, worker_id: str, web_socket: Path, parent_pid: int
) -> list[str]:
    """The command line of one supervised child: the parent's options, one process, its own
    worker id, its web server on a Unix socket (``tests/worker/test_supervise.py`` checks that
    every option of the parent reaches the child)."""
    argv = [sys.executable, "-m", "broker.cli", "worker", "--processes", "1"]
    argv += ["--worker-id", worker_id, "--web-socket", str(web_socket)]
    argv += ["--parent-pid", str(parent_pid), "--web-port", "0", "--group", args.group]
    argv += ["--checkpoint-interval", repr(args.checkpoint_interval)]
    argv += ["--consumer", args.consumer]
    argv += ["--log-level", args.log_level, "--log-format", args.log_format]
    for path in args.contracts or []:
        argv += ["--contracts", str(path)]
    if args.allow_outside_refs:
        argv.append("--allow-outside-refs")
    for option, value in (
        ("--bootstrap", args.bootstrap),
        ("--kafka-config", args.kafka_config),
        ("--master-key-file", args.master_key_file),
        ("--new-master-key-file", args.new_master_key_file),
    ):
        if value is not None:
            argv += [option, str(value)]
    return argv
