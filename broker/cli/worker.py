"""``respublica worker``: run the policy worker of every active contract.

See ``broker/worker/engine.py``.
"""

from __future__ import annotations

import argparse
import os
import socket
from pathlib import Path
from typing import Any

from broker.cli.contracts import add_allow_outside_refs, default_contract_paths
from broker.cli.options import add_kafka_options, add_log_options, kafka_settings, setup_logging
from broker.kafka.defaults import WORKER_GROUP

# Copies of broker.worker.keystore's variables, whose module loads cryptography:
# `--help` must stay fast. tests/layout/test_cli_start.py checks that they agree.
MASTER_KEY_ENV = "RESPUBLICA_MASTER_KEY"
NEW_MASTER_KEY_ENV = "RESPUBLICA_NEW_MASTER_KEY"


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
        help="consumer-group prefix shared by the workers of one deployment (default "
        f"{WORKER_GROUP}; the ACLs `respublica apply` creates allow groups prefixed "
        f"'{WORKER_GROUP}.')",
    )
    worker.add_argument(
        "--checkpoint-interval",
        type=float,
        default=1.0,
        help="seconds between stage-1 checkpoints (default 1)",
    )
    add_log_options(worker)
    worker.set_defaults(handler=_worker)


def _worker(args: argparse.Namespace) -> int:
    from broker.worker.app import run
    from broker.worker.engine import Engine, WorkerConfig, active_contracts, now_utc
    from broker.worker.keystore import load_master_keys
    from contracts import load_contracts

    setup_logging(args)
    contracts = load_contracts(
        args.contracts or default_contract_paths(),
        now=now_utc(),
        allow_outside=args.allow_outside_refs,
    )
    masters = load_master_keys(args.master_key_file, args.new_master_key_file)
    config = WorkerConfig(
        kafka_settings=kafka_settings(args),
        worker_id=args.worker_id or f"{socket.gethostname()}-{os.getpid()}",
        group=args.group,
        web_port=args.web_port or None,
        web_host=args.web_host,
        checkpoint_interval_s=args.checkpoint_interval,
    )
    engine = Engine(config, active_contracts(contracts, now_utc()), masters)
    engine.prepare()  # before faust: a startup error is one line and exit code 1
    return run(engine, loglevel=args.log_level)
