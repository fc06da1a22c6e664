"""``respublica kafka start|stop|status``: the local single-node broker."""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from broker.kafka.defaults import DEFAULT_PORT, KAFKA_VERSION, default_data_dir

if TYPE_CHECKING:
    from broker.kafka.local import LocalKafka


_TIMEOUT_HELP = {
    "start": (60.0, "seconds to wait for the broker to come up (default 60)"),
    "stop": (
        20.0,
        "seconds to wait for the broker to exit after SIGTERM, before SIGKILL (default 20)",
    ),
}


def register(commands: Any) -> None:
    kafka = commands.add_parser("kafka", help="run a local single-node Kafka broker")
    actions = kafka.add_subparsers(dest="action", required=True, metavar="ACTION")
    for name, handler, help_text in (
        ("start", _start, "start the broker (fetches its jars on first use)"),
        ("stop", _stop, "stop the broker started by 'start'"),
        ("status", _status, "say whether the broker runs, and where"),
    ):
        sub = actions.add_parser(name, help=help_text)
        sub.add_argument(
            "--port",
            type=int,
            default=DEFAULT_PORT,
            help=f"client port (controller uses port+1; default {DEFAULT_PORT})",
        )
        sub.add_argument(
            "--data-dir",
            type=Path,
            default=None,
            help=f"storage, pid and logs (default {default_data_dir()}); given explicitly, "
            "stop and status act on this local broker even when KAFKA_BOOTSTRAP is set",
        )
        sub.add_argument("--kafka-version", default=KAFKA_VERSION, help=argparse.SUPPRESS)
        sub.add_argument(
            "--insecure",
            action="store_true",
            help="a PLAINTEXT broker without authentication or authorizer (default: TLS, "
            "SASL/SCRAM users and the StandardAuthorizer; a data dir keeps its mode)",
        )
        if name in _TIMEOUT_HELP:
            default, text = _TIMEOUT_HELP[name]
            sub.add_argument("--timeout", type=float, default=default, help=text)
        sub.set_defaults(handler=handler)


def _local(args: argparse.Namespace) -> LocalKafka:
    from broker.kafka.local import LocalKafka, LocalKafkaConfig

    timeouts = {}
    if args.action in _TIMEOUT_HELP:
        timeouts[f"{args.action}_timeout_s"] = args.timeout
    config = LocalKafkaConfig(
        port=args.port,
        data_dir=args.data_dir or default_data_dir(),
        kafka_version=args.kafka_version,
        insecure=args.insecure,
        **timeouts,
    )
    return LocalKafka(config)


def _external(args: argparse.Namespace | None = None) -> str | None:
    """The external cluster, unless an explicit ``--data-dir`` names a local broker."""
    if args is not None and args.data_dir is not None:
        return None
    return os.environ.get("KAFKA_BOOTSTRAP") or None


def _start(args: argparse.Namespace) -> int:
    external = _external()
    if external:
        print(f"KAFKA_BOOTSTRAP is set: using the cluster at {external}, starting nothing")
        return 0
    started, status = _local(args).start()
    if started:
        print(f"Kafka started: bootstrap {status.bootstrap} (pid {status.pid})")
    else:
        print(f"Kafka is already running: bootstrap {status.bootstrap} (pid {status.pid})")
    if status.client_config is None:
        print("INSECURE: plaintext, no authentication, no authorizer (--insecure)")
    else:
        print(
            "TLS + SASL/SCRAM-SHA-512 + authorizer. Client configs (one per user, mode 0600) in "
            f"{status.client_config.parent}; for example:\n"
            f"  export RESPUBLICA_KAFKA_CONFIG={status.client_config}"
        )
    return 0


def _stop(args: argparse.Namespace) -> int:
    if _external(args):
        print(
            "KAFKA_BOOTSTRAP is set: the cluster is not ours to stop "
            "(to stop a local broker anyway, name it: --data-dir DIR)"
        )
        return 0
    stopped = _local(args).stop()
    print("Kafka stopped" if stopped else "Kafka was not running")
    return 0


def _status(args: argparse.Namespace) -> int:
    external = _external(args)
    if external:
        print(f"using the external cluster KAFKA_BOOTSTRAP={external}")
        return 0
    status = _local(args).status()
    print(status.describe())
    return 0 if status.running else 3
