"""Where ``simulate`` and ``replay`` send their NDJSON lines: a file, the gateway, or Kafka.

``add_destination`` adds ``--out | --to-gateway URL --token T | --to-kafka`` and the pacing,
batch and retry options; ``deliver`` sends the lines there and returns the ``PushStats``.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import IO, TYPE_CHECKING

from broker.cli import connect as cli_connect
from broker.cli.options import add_kafka_options, kafka_settings
from contracts.errors import RespublicaError

# (stream, NDJSON line, its line number in the input file or None for generated lines)
Line = tuple[str, bytes, int | None]

if TYPE_CHECKING:
    from broker.kafka.settings import KafkaSettings
    from connectors.push import PushStats
    from connectors.retry import RetryPolicy
    from contracts import Contract

TOKEN_ENV = "RESPUBLICA_TOKEN"  # noqa: S105 - the name of a variable, not a token


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


def deliver(
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
