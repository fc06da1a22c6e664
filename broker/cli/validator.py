"""``respublica validator``: validate ``ingest.<c>.<s>`` into ``raw.<c>.<s>`` / ``dlq.<c>.<s>``."""

from __future__ import annotations

import argparse
import signal
import threading
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from broker.cli.contracts import add_allow_outside_refs, default_contract_paths
from broker.cli.options import (
    add_heartbeat_options,
    add_kafka_options,
    add_log_options,
    kafka_settings,
    setup_logging,
)
from broker.kafka.defaults import VALIDATOR_GROUP as DEFAULT_GROUP


def register(commands: Any) -> None:
    sub = commands.add_parser(
        "validator", help="validate provider input on ingest topics into raw or DLQ topics"
    )
    sub.add_argument(
        "--contracts",
        type=Path,
        nargs="+",
        action="extend",
        metavar="PATH",
        help="contract files or directories (repeatable; default: "
        "$RESPUBLICA_CONTRACTS or the bundled examples)",
    )
    add_allow_outside_refs(sub)
    add_kafka_options(sub)
    sub.add_argument(
        "--group",
        default=DEFAULT_GROUP,
        help=f"consumer group; run more processes to scale (default {DEFAULT_GROUP})",
    )
    sub.add_argument(
        "--metrics-port",
        type=int,
        default=None,
        help="serve /metrics, /healthz and /livez on this port (0: any free port; default: off)",
    )
    sub.add_argument(
        "--metrics-host",
        default="127.0.0.1",
        help="address of that listener (default 127.0.0.1; 0.0.0.0 in a container)",
    )
    add_heartbeat_options(sub)
    add_log_options(sub)
    sub.set_defaults(handler=_run)


def _run(args: argparse.Namespace) -> int:
    from prometheus_client import CollectorRegistry

    from broker.kafka.health import HealthServer
    from connectors.ingest import CONNECTOR, IngestSettings, IngestValidator
    from connectors.metrics import IngestMetrics
    from contracts import load_contracts

    setup_logging(args)
    contracts = load_contracts(
        args.contracts or default_contract_paths(),
        now=datetime.now(UTC),
        allow_outside=args.allow_outside_refs,
    )
    registry = CollectorRegistry()
    settings = IngestSettings(
        heartbeat_interval_s=args.heartbeat_interval,
        heartbeat_margin_ms=int(args.heartbeat_margin * 1000),
    )
    metrics = IngestMetrics(registry)
    metrics.declare(contracts, CONNECTOR)  # every series at 0 before the first event
    validator = IngestValidator(
        contracts,
        kafka_settings(args),
        group_id=args.group,
        registry=registry,
        settings=settings,
        metrics=metrics,
    )
    server = None
    if args.metrics_port is not None:
        server = HealthServer(args.metrics_host, args.metrics_port, registry, validator.health)
        print(f"Health and metrics on http://{args.metrics_host}:{server.start().port}/healthz")
    stop = threading.Event()
    # SIGTERM (Kubernetes, systemd) and Ctrl-C finish the batch in progress, then commit.
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    print(
        f"Validating {len(validator.ingest_topics)} ingest topics "
        f"(group {args.group}); Ctrl-C to stop."
    )
    try:
        stats = validator.run(stop)
    finally:
        if server is not None:
            server.stop()
    print(
        f"Stopped: {stats.consumed} consumed, {stats.accepted} accepted, {stats.rejected} rejected."
    )
    return 0
