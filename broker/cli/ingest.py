"""``respublica gateway``, ``simulate``, ``replay`` and ``connect``: getting events in.

* ``gateway`` runs the HTTP push gateway (``broker.ingest.gateway``); ``gateway hash-token`` prints
  the SHA-256 of a token read from stdin, ``gateway new-token`` makes a token and its hash.
* ``simulate`` writes seeded synthetic events (``broker.cli.simulate``).
* ``replay`` pushes an NDJSON file through the gateway or to ``ingest.``; batches the gateway
  answers 5xx/429/408 (or does not answer) are retried, and when the retries run out it exits 1
  naming the first line not acknowledged, for ``--from-line``.
* ``connect`` runs a pull connector (``broker.cli.connect``).
"""

from __future__ import annotations

import argparse
import os
import sys
from contextlib import ExitStack
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from broker.cli import connect as cli_connect
from broker.cli import simulate as cli_simulate
from broker.cli.contracts import add_allow_outside_refs, default_contract_paths
from broker.cli.delivery import add_destination, deliver
from broker.cli.options import (
    add_heartbeat_options,
    add_kafka_options,
    add_log_options,
    kafka_settings,
    setup_logging,
)
from contracts.errors import RespublicaError

if TYPE_CHECKING:
    from contracts import Contract

TOKENS_ENV = "RESPUBLICA_GATEWAY_TOKENS"
METRICS_PORT = 9464  # the Prometheus exporters' registered default port


def register(commands: Any) -> None:
    """Add the ingestion commands to the ``respublica`` parser."""
    _register_gateway(commands)
    cli_simulate.register(commands)
    _register_replay(commands)
    cli_connect.register(commands)


def _register_gateway(commands: Any) -> None:
    gateway = commands.add_parser("gateway", help="run the HTTP push gateway for providers")
    gateway.add_argument(
        "--contracts",
        type=Path,
        nargs="+",
        action="extend",
        metavar="PATH",
        help="contract files or directories (default: $RESPUBLICA_CONTRACTS "
        "or the bundled examples)",
    )
    add_allow_outside_refs(gateway)
    gateway.add_argument("--host", default="127.0.0.1", help="address to listen on (127.0.0.1)")
    gateway.add_argument("--port", type=int, default=8080, help="port to listen on (8080)")
    gateway.add_argument(
        "--tls-cert",
        type=Path,
        metavar="FILE",
        help="serve HTTPS (TLS 1.2+) with this PEM certificate chain (with --tls-key); "
        "default: plain HTTP, for use behind a TLS proxy",
    )
    gateway.add_argument(
        "--tls-key", type=Path, metavar="FILE", help="the PEM private key of --tls-cert"
    )
    gateway.add_argument(
        "--metrics-host",
        default="127.0.0.1",
        help="address of the /metrics listener, apart from the push API (127.0.0.1)",
    )
    gateway.add_argument(
        "--metrics-port",
        type=int,
        default=METRICS_PORT,
        help=f"port of /metrics; 0: no metrics listener ({METRICS_PORT})",
    )
    gateway.add_argument(
        "--tokens", type=Path, help=f"provider tokens file (default: ${TOKENS_ENV})"
    )
    add_kafka_options(gateway)
    gateway.add_argument("--max-batch", type=int, default=5000, help="events per request (5000)")
    gateway.add_argument(
        "--max-body-bytes",
        type=int,
        default=16 * 1024 * 1024,
        help="request body limit in bytes, on the wire and decompressed (16 MiB)",
    )
    gateway.add_argument(
        "--max-item-bytes",
        type=int,
        default=64 * 1024,
        help="size limit of one event (array element or NDJSON line), at most 256 KiB; "
        "larger events are rejected as PAYLOAD_TOO_LARGE (64 KiB)",
    )
    gateway.add_argument(
        "--body-timeout",
        type=float,
        default=30.0,
        metavar="SECONDS",
        help="time to receive a whole request body, else 408 and the connection closes (30)",
    )
    gateway.add_argument(
        "--rate-limit",
        type=float,
        default=25_000.0,
        metavar="EVENTS_PER_S",
        help="events per second per token, else 429 with Retry-After; 0: no limit (25000)",
    )
    gateway.add_argument(
        "--rate-burst",
        type=int,
        default=50_000,
        metavar="EVENTS",
        help="events a token may send at once above its rate (50000)",
    )
    gateway.add_argument(
        "--max-concurrent",
        type=int,
        default=8,
        help="requests in progress per token, else 429; 0: no limit (8)",
    )
    gateway.add_argument(
        "--max-connections",
        type=int,
        default=512,
        help="open connections, else 503 and close; 0: no limit (512)",
    )
    gateway.add_argument(
        "--max-vehicles",
        type=int,
        default=100_000,  # broker.ingest.fleet.DEFAULT_MAX_VEHICLES (not imported: fast --help)
        help="MDS Agency vehicles registered per provider and contract, in memory (100,000)",
    )
    add_heartbeat_options(gateway)
    add_log_options(gateway)
    gateway.set_defaults(handler=_gateway)
    actions = gateway.add_subparsers(dest="action", metavar="ACTION")
    actions.add_parser(
        "hash-token", help="print the SHA-256 of a token read from stdin"
    ).set_defaults(handler=_hash_token)
    actions.add_parser("new-token", help="print a new random token and its SHA-256").set_defaults(
        handler=_new_token
    )


def _gateway(args: argparse.Namespace) -> int:
    import asyncio

    from prometheus_client import CollectorRegistry

    from broker.ingest.auth import load_tokens
    from broker.ingest.fairuse import FairUseLimits
    from broker.ingest.gateway import GatewayConfig, make_app, make_metrics_app
    from broker.ingest.producer import GatewayProducer
    from broker.ingest.server import Listen, ServeConfig, serve, tls_context
    from broker.kafka.writer import ProducerSettings
    from contracts import load_contracts

    setup_logging(args)
    tokens = args.tokens or (Path(os.environ[TOKENS_ENV]) if os.environ.get(TOKENS_ENV) else None)
    if tokens is None:
        msg = f"give the provider tokens file with --tokens FILE (or ${TOKENS_ENV})"
        raise RespublicaError(msg)
    contracts = load_contracts(
        args.contracts or default_contract_paths(),
        now=datetime.now(UTC),
        allow_outside=args.allow_outside_refs,
    )
    config = GatewayConfig(
        contracts=tuple(contracts),
        providers=load_tokens(tokens),
        max_batch=args.max_batch,
        max_body_bytes=args.max_body_bytes,
        max_item_bytes=args.max_item_bytes,
        body_timeout_s=args.body_timeout,
        fair_use=FairUseLimits(args.rate_limit, args.rate_burst, args.max_concurrent),
        max_connections=args.max_connections,
        max_vehicles=args.max_vehicles,
        heartbeat_interval_s=args.heartbeat_interval,
        heartbeat_margin_ms=int(args.heartbeat_margin * 1000),
    )
    if (args.tls_cert is None) != (args.tls_key is None):
        msg = "give both --tls-cert and --tls-key, or neither"
        raise RespublicaError(msg)
    tls = tls_context(args.tls_cert, args.tls_key) if args.tls_cert else None
    metrics = Listen(args.metrics_host, args.metrics_port) if args.metrics_port else None
    where = ServeConfig(Listen(args.host, args.port), metrics, config.max_connections, tls)
    registry = CollectorRegistry()
    settings = ProducerSettings(kafka_settings(args))
    app = make_app(config, lambda: GatewayProducer(settings), registry=registry)
    scheme = "https" if tls else "http"
    scraped = f"/metrics on http://{metrics.host}:{metrics.port}" if metrics else "no /metrics"
    print(
        f"respublica gateway on {scheme}://{args.host}:{args.port} for {len(contracts)} "
        f"contracts and {len(config.providers)} providers, {scraped}; Ctrl-C to stop."
    )
    asyncio.run(serve(app, where, metrics=make_metrics_app(registry)))
    return 0


def _hash_token(args: argparse.Namespace) -> int:
    from broker.ingest.auth import hash_token

    token = sys.stdin.readline().strip()
    if not token:
        msg = "no token on stdin"
        raise RespublicaError(msg)
    print(hash_token(token))
    return 0


def _new_token(args: argparse.Namespace) -> int:
    from broker.ingest.auth import hash_token, new_token

    token = new_token()
    print(f"token:        {token}\ntoken_sha256: {hash_token(token)}")
    print(
        "Give the token to the provider; put only token_sha256 in the tokens file.", file=sys.stderr
    )
    return 0


def _register_replay(commands: Any) -> None:
    replay = commands.add_parser("replay", help="push an NDJSON file of events")
    replay.add_argument("file", type=Path, help="NDJSON file, one event per line ('-': stdin)")
    replay.add_argument("--contract", required=True, help="contract id")
    replay.add_argument("--stream", required=True, help="stream name")
    replay.add_argument(
        "--from-line",
        type=int,
        default=1,
        metavar="N",
        help="start at line N of the file (1-based), as an earlier run that gave up said (1)",
    )
    add_destination(replay, out=False)
    replay.set_defaults(handler=_replay)


def _replay(args: argparse.Namespace) -> int:
    from connectors.push import numbered_lines

    if args.from_line < 1:
        msg = "--from-line counts from 1"
        raise RespublicaError(msg)
    with ExitStack() as stack:
        handle: IO[bytes] = (
            sys.stdin.buffer if str(args.file) == "-" else stack.enter_context(args.file.open("rb"))
        )
        lines = (
            (args.stream, line, number) for number, line in numbered_lines(handle, args.from_line)
        )
        contract = _known_contract(args.contract)
        stats = deliver(lines, args, args.contract, contract)
    print(stats.summary(), file=sys.stderr)
    return 0 if set(stats.statuses) <= {200} else 1


def _known_contract(contract_id: str) -> Contract | None:
    """The contract with this id among the configured ones, for its subject fields."""
    from contracts import load_contracts

    try:
        contracts = load_contracts(default_contract_paths(), now=datetime.now(UTC))
    except RespublicaError:
        return None
    return next((c for c in contracts if c.id == contract_id), None)
