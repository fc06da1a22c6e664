"""``respublica gateway``, ``simulate``, ``replay`` and ``connect``: getting events in.

* ``gateway`` runs the HTTP push gateway (``broker.ingest.gateway``); ``gateway hash-token`` prints
  the SHA-256 of a token read from stdin, ``gateway new-token`` makes a token and its hash.
* ``simulate`` writes seeded synthetic events (NDJSON file, the gateway or ``ingest.``).
* ``replay`` pushes an NDJSON file through the gateway or to ``ingest.``; batches the gateway
  answers 5xx/429/408 (or does not answer) are retried, and when the retries run out it exits 1
  naming the first line not acknowledged, for ``--from-line``.
* ``connect`` runs a pull connector (``broker.cli.connect``).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import ExitStack
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from broker.cli import connect as cli_connect
from broker.cli.contracts import add_allow_outside_refs, default_contract_paths
from broker.cli.options import add_kafka_options, add_log_options, kafka_settings, setup_logging
from contracts import examples_dir
from contracts.errors import RespublicaError

# (stream, NDJSON line, its line number in the input file or None for generated lines)
Line = tuple[str, bytes, int | None]

if TYPE_CHECKING:
    from broker.kafka.settings import KafkaSettings
    from connectors.push import PushStats
    from connectors.retry import RetryPolicy
    from contracts import Contract

TOKENS_ENV = "RESPUBLICA_GATEWAY_TOKENS"
METRICS_PORT = 9464  # the Prometheus exporters' registered default port
TOKEN_ENV = "RESPUBLICA_TOKEN"  # noqa: S105 - the name of a variable, not a token
# The names of connectors.simulate.SIMULATORS, whose package takes a while to import: `--help`
# must stay fast. tests/layout/test_cli_start.py checks that they agree.
SIMULATOR_NAMES = ("mobility", "navigation", "rentals")


def register(commands: Any) -> None:
    """Add the ingestion commands to the ``respublica`` parser."""
    _register_gateway(commands)
    _register_simulate(commands)
    _register_replay(commands)
    cli_connect.register(commands)


def add_destination(parser: argparse.ArgumentParser, *, out: bool) -> None:
    """``--out FILE | --to-gateway URL --token T | --to-kafka [--bootstrap B]``."""
    where = parser.add_mutually_exclusive_group(required=not out)
    if out:
        where.add_argument("--out", type=Path, help="write NDJSON to FILE ('-': stdout, default)")
    where.add_argument("--to-gateway", metavar="URL", help="POST batches to a gateway at URL")
    where.add_argument("--to-kafka", action="store_true", help="produce JSON to ingest.<c>.<s>")
    parser.add_argument("--token", help=f"gateway bearer token (default: ${TOKEN_ENV})")
    add_kafka_options(parser)
    parser.add_argument(
        "--rate",
        type=float,
        default=None,
        metavar="EPS",
        help="at most this many events per second (default: as fast as possible)",
    )
    parser.add_argument("--batch", type=int, default=500, help="events per HTTP request (500)")
    cli_connect.add_retry_options(parser)


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


def _register_simulate(commands: Any) -> None:
    sim = commands.add_parser("simulate", help="generate seeded synthetic provider events")
    sim.add_argument("kind", choices=SIMULATOR_NAMES, help="which example contract to feed")
    sim.add_argument("--events", type=int, default=10_000, help="number of good events (10000)")
    sim.add_argument("--seed", type=int, default=0, help="random seed (0)")
    sim.add_argument(
        "--start",
        default=None,
        help="first event time, ISO 8601 with zone, or 'now' (default 2026-06-01T06:00:00Z)",
    )
    sim.add_argument(
        "--size",
        type=int,
        default=None,
        help="vehicles, listings or reporters (default: per simulator)",
    )
    sim.add_argument("--stream", action="append", help="only this stream (repeatable)")
    sim.add_argument(
        "--bad-share",
        type=float,
        default=0.0,
        help="share of bad events mixed in, e.g. 0.05 (default 0)",
    )
    sim.add_argument("--contract", help="contract id to send to (default: the example's id)")
    add_destination(sim, out=True)
    sim.set_defaults(handler=_simulate)


def _simulate(args: argparse.Namespace) -> int:
    from connectors.simulate import SimOptions, parse_start, simulator

    start = (
        None
        if args.start is None
        else int(time.time() * 1000)
        if args.start == "now"
        else parse_start(args.start)
    )
    options = SimOptions(
        seed=args.seed, size=args.size, **({} if start is None else {"start_ms": start})
    )
    source = simulator(args.kind, options)
    contract = _example(source.contract_id)
    contract_id = args.contract or contract.id
    lines, tally = _simulated_lines(source.records(), args, contract)
    stats = _deliver(lines, args, contract_id, contract)
    bad = ", ".join(f"{k}={n}" for k, n in sorted(tally.items())) or "none"
    print(f"simulate {args.kind}: bad events mixed in: {bad}", file=sys.stderr)
    print(
        stats.summary()
        if stats.statuses or args.to_kafka
        else f"wrote {stats.sent} events in {stats.elapsed_s:.1f}s",
        file=sys.stderr,
    )
    return 0


def _simulated_lines(
    records: Any, args: argparse.Namespace, contract: Contract
) -> tuple[Iterator[Line], Counter[str]]:
    from connectors.simulate import take
    from connectors.simulate.faults import FaultInjector, to_json_line

    tally: Counter[str] = Counter()
    wanted = args.stream or None
    injectors = {s.name: FaultInjector(contract, s.name, seed=args.seed) for s in contract.streams}

    def lines() -> Iterator[Line]:
        for stream, record in take(records, args.events, wanted):
            if not args.bad_share:
                yield stream, to_json_line(record), None
                continue
            for item in injectors[stream].mix([record], share=args.bad_share):
                if item.fault is not None:
                    tally[item.fault.kind.value] += 1
                yield stream, item.payload, None

    return lines(), tally


def _example(contract_id: str) -> Contract:
    from contracts import load_contracts

    contracts = {c.id: c for c in load_contracts([examples_dir()], now=datetime.now(UTC))}
    return contracts[contract_id]


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
        stats = _deliver(lines, args, args.contract, contract)
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


def _deliver(
    lines: Iterator[Line],
    args: argparse.Namespace,
    contract_id: str,
    contract: Contract | None,
) -> PushStats:
    if args.to_gateway:
        token = args.token or os.environ.get(TOKEN_ENV)
        if not token:
            msg = f"give the gateway token with --token or ${TOKEN_ENV}"
            raise RespublicaError(msg)
        import asyncio

        policy = cli_connect.retry_policy(args)
        return asyncio.run(_to_gateway(lines, args.to_gateway, token, contract_id, args, policy))
    if args.to_kafka:
        subjects = {s.name: s.subject for s in contract.streams} if contract else {}
        return _to_kafka(lines, kafka_settings(args), contract_id, subjects, args.rate)
    return _to_file(lines, getattr(args, "out", None), args.rate)


async def _to_gateway(
    lines: Iterator[Line],
    url: str,
    token: str,
    contract_id: str,
    args: argparse.Namespace,
    policy: RetryPolicy,
) -> PushStats:
    from connectors.push import GatewayPusher, NotDelivered

    pusher = GatewayPusher(url, token, contract_id, batch=args.batch, rate=args.rate, retry=policy)
    try:
        async with pusher:
            for stream, line, number in lines:
                await pusher.add(stream, line, number)
    except NotDelivered:
        print(pusher.stats.summary(), file=sys.stderr)
        raise
    return pusher.stats


def _to_kafka(
    lines: Iterator[Line],
    kafka: KafkaSettings,
    contract_id: str,
    subjects: dict[str, str],
    rate: float | None,
) -> PushStats:
    from connectors.push import KafkaIngestPusher

    pusher = KafkaIngestPusher(kafka, contract_id, subjects)
    try:
        for stream, line, number in _paced(lines, rate):
            pusher.add(stream, line, number)
    finally:
        pusher.close()
    return pusher.stats


def _to_file(lines: Iterator[Line], out: Path | None, rate: float | None) -> PushStats:
    from connectors.push import PushStats

    stats = PushStats()
    started = time.monotonic()
    with ExitStack() as stack:
        handle: IO[bytes] = (
            sys.stdout.buffer
            if out is None or str(out) == "-"
            else stack.enter_context(out.open("wb"))
        )
        for _, line, _ in _paced(lines, rate):
            handle.write(line + b"\n")
            stats.sent += 1
    stats.accepted = stats.sent
    stats.elapsed_s = time.monotonic() - started
    return stats


def _paced(lines: Iterator[Line], rate: float | None) -> Iterator[Line]:
    started = time.monotonic()
    for count, item in enumerate(lines):
        if rate:
            ahead = started + count / rate - time.monotonic()
            if ahead > 0:
                time.sleep(ahead)
        yield item
