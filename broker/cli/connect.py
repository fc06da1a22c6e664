"""``respublica connect gbfs|mds|rentals|waze``: pull a provider's feed or file into Kafka.

Connectors validate what they read with the same validator as the gateway and write the
outcome straight to ``raw.<c>.<s>`` or ``dlq.<c>.<s>`` (``connectors.emit``), so a rejected
row or item is reported at once, by number and reason, and nothing waits on ``ingest.``.

A feed that answers 5xx, 429 or 408, or does not answer, is retried with backoff (the
``--retry-*`` options, shared with ``replay``); when the retries run out the command exits 1
and says where a restart resumes. Kafka being away is waited out, never given up on
(``connectors.outbox``); a refusal no wait can heal (a record too large, credentials or ACLs
refused) exits 1 with what to fix. SIGTERM and SIGINT stop a poller at once (exit 0): what was not
acknowledged by Kafka yet is read again by the next run.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from broker.cli.contracts import add_allow_outside_refs, default_contract_paths
from broker.cli.options import add_kafka_options, add_log_options, kafka_settings, setup_logging
from contracts.errors import RespublicaError

if TYPE_CHECKING:
    import asyncio

    import aiohttp

    from connectors.emit import Emitter
    from connectors.outbox import Outbox
    from connectors.poll import Fetch
    from connectors.retry import RetryPolicy, TransientError
    from contracts import Contract

MDS_TOKEN_ENV = "RESPUBLICA_MDS_TOKEN"  # noqa: S105 - the name of a variable, not a token
# Copies of connectors.retry.RetryPolicy's defaults (importing it would slow `--help` down);
# tests/connectors/test_retry_policy.py checks that they agree.
RETRY_DEFAULTS = {
    "attempts": 10,
    "timeout_s": 300.0,
    "wait_initial_s": 0.5,
    "wait_max_s": 30.0,
    "retry_after_max_s": 120.0,
}
_log = logging.getLogger(__name__)


def add_retry_options(parser: argparse.ArgumentParser) -> None:
    """``--retry-attempts``, ``--retry-timeout``, ``--retry-wait``, ``--retry-wait-max`` and
    ``--retry-after-max``: how one HTTP request is retried on 5xx, 429, 408 or no answer."""
    d = RETRY_DEFAULTS
    parser.add_argument(
        "--retry-attempts",
        type=int,
        default=d["attempts"],
        metavar="N",
        help=f"tries of one request in all, 1 = no retry (default {d['attempts']})",
    )
    parser.add_argument(
        "--retry-timeout",
        type=float,
        default=d["timeout_s"],
        metavar="S",
        help=f"seconds one request may take, retries included (default {d['timeout_s']:g})",
    )
    parser.add_argument(
        "--retry-wait",
        type=float,
        default=d["wait_initial_s"],
        metavar="S",
        help="first wait in seconds; doubles each retry, plus jitter "
        f"(default {d['wait_initial_s']:g})",
    )
    parser.add_argument(
        "--retry-wait-max",
        type=float,
        default=d["wait_max_s"],
        metavar="S",
        help=f"longest wait between tries (default {d['wait_max_s']:g})",
    )
    parser.add_argument(
        "--retry-after-max",
        type=float,
        default=d["retry_after_max_s"],
        metavar="S",
        help="a server's Retry-After is honoured up to this many seconds "
        f"(default {d['retry_after_max_s']:g})",
    )


def retry_policy(args: argparse.Namespace) -> RetryPolicy:
    """The ``RetryPolicy`` the ``--retry-*`` options describe."""
    from connectors.retry import RetryPolicy

    if args.retry_attempts < 1 or args.retry_timeout <= 0:
        msg = "--retry-attempts must be at least 1 and --retry-timeout positive"
        raise RespublicaError(msg)
    return RetryPolicy(
        attempts=args.retry_attempts,
        timeout_s=args.retry_timeout,
        wait_initial_s=args.retry_wait,
        wait_max_s=args.retry_wait_max,
        retry_after_max_s=args.retry_after_max,
    )


def register(commands: Any) -> None:
    """Add ``connect`` and its four connectors."""
    connect = commands.add_parser("connect", help="pull a provider feed or file into Kafka")
    kinds = connect.add_subparsers(dest="connector", required=True, metavar="CONNECTOR")
    gbfs = _common(kinds.add_parser("gbfs", help="a GBFS v2.3/v3 system (availability)"))
    gbfs.add_argument("url", help="gbfs.json, or the vehicle_status/free_bike_status URL")
    gbfs.add_argument("--provider-id", required=True, help="MDS provider id to put on events")
    gbfs.add_argument("--source", default="gbfs", help="name of this feed in metrics (gbfs)")
    gbfs.add_argument(
        "--min-interval",
        type=float,
        default=10.0,
        help="seconds between polls at least, even if the ttl is shorter (10)",
    )
    add_retry_options(gbfs)
    _add_response_cap(gbfs)
    gbfs.set_defaults(handler=_gbfs)
    mds = _common(kinds.add_parser("mds", help="an MDS Provider 2.0 API (events and trips)"))
    mds.add_argument("url", help="base URL of the provider's MDS 2.0 Provider API")
    mds.add_argument(
        "--checkpoint",
        type=Path,
        required=True,
        help="file keeping the position, to resume after a restart",
    )
    mds.add_argument(
        "--since",
        help="first time to read (ISO 8601; default: now minus the events stream's "
        "allowed lateness, the oldest event the contract still accepts)",
    )
    mds.add_argument(
        "--interval",
        type=float,
        default=60.0,
        help="seconds between polls, and the grid of /events/recent windows (60)",
    )
    mds.add_argument(
        "--lag",
        type=float,
        default=60.0,
        help="seconds not asked for yet: the provider may still be writing them (60)",
    )
    mds.add_argument("--no-trips", action="store_true", help="read /events/recent only, not /trips")
    add_retry_options(mds)
    _add_response_cap(mds)
    mds.set_defaults(handler=_mds)
    rentals = _common(kinds.add_parser("rentals", help="import a rental activity CSV/JSON file"))
    rentals.add_argument("file", type=Path, help="the activity file")
    rentals.add_argument("--format", choices=("csv", "json"), help="default: from the suffix")
    rentals.add_argument("--stream", default="activity", help="contract stream (activity)")
    rentals.add_argument("--now", help="validation clock for a historical file (ISO 8601)")
    rentals.set_defaults(handler=_rentals)
    waze = _common(kinds.add_parser("waze", help="a Waze for Cities style jams/alerts feed"))
    waze.add_argument("url", help="the feed URL (kept secret: never logged)")
    waze.add_argument("--interval", type=float, default=120.0, help="seconds between polls")
    add_retry_options(waze)
    _add_response_cap(waze)
    waze.set_defaults(handler=_waze)


def _add_response_cap(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--max-response-mib",
        type=float,
        default=64.0,
        metavar="MIB",
        help="largest feed answer read, decompressed; a larger one is an error (64)",
    )


def _common(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    parser.add_argument("--contract", required=True, help="contract id to feed")
    parser.add_argument(
        "--contracts",
        type=Path,
        nargs="+",
        action="extend",
        metavar="PATH",
        help="contract files or directories (default: $RESPUBLICA_CONTRACTS "
        "or the bundled examples)",
    )
    add_allow_outside_refs(parser)
    add_kafka_options(parser)
    add_log_options(parser)
    parser.add_argument("--polls", type=int, default=None, help="stop after N polls")
    parser.add_argument(
        "--metrics-port",
        type=int,
        default=None,
        help="serve Prometheus metrics on this port (default: off)",
    )
    return parser


class _Setup:
    """Contracts, validator, metrics and Kafka settings of one connector run."""

    def __init__(self, args: argparse.Namespace, connector: str) -> None:
        from prometheus_client import CollectorRegistry, start_http_server

        from connectors.metrics import IngestMetrics
        from connectors.poll import SystemClock
        from connectors.validate import Router
        from contracts import load_contracts

        setup_logging(args)
        contracts = load_contracts(
            args.contracts or default_contract_paths(),
            now=datetime.now(UTC),
            allow_outside=args.allow_outside_refs,
        )
        self.connector = connector
        self.contract = _find(contracts, args.contract)
        self.router = Router(contracts)
        self.registry = CollectorRegistry()
        self.metrics = IngestMetrics(self.registry)
        self.metrics.declare([self.contract], connector)  # every series at 0 before a poll
        if args.metrics_port is not None:
            start_http_server(args.metrics_port, registry=self.registry)
        self.kafka = kafka_settings(args)
        self.clock = SystemClock()

    def emitter(self, clock: Callable[[], int] | None = None) -> tuple[Emitter, Any]:
        """A synchronous emitter on a ``KafkaSink`` (file imports), and the sink."""
        from connectors.emit import Emitter, KafkaSink

        sink = KafkaSink(self.kafka)
        emitter = Emitter(
            self.router,
            self.contract.id,
            sink=sink,
            connector=self.connector,
            clock=clock or self.clock.now_ms,
            metrics=self.metrics,
        )
        return emitter, sink

    def outbox(self) -> Outbox:
        """An outbox on aiokafka that waits out Kafka outages (pollers)."""
        from broker.kafka.writer import KafkaBatchWriter, ProducerSettings
        from connectors.outbox import Outbox

        settings = ProducerSettings(self.kafka, role="connector")
        return Outbox(
            self.router,
            self.contract.id,
            writer=lambda: KafkaBatchWriter(settings),
            connector=self.connector,
            clock=self.clock,
            metrics=self.metrics,
        )


def _find(contracts: list[Contract], contract_id: str) -> Contract:
    for contract in contracts:
        if contract.id == contract_id:
            return contract
    msg = "no loaded contract has this id (see `respublica contracts show`)"
    raise RespublicaError(msg)


def _run(
    poll: Callable[[aiohttp.ClientSession, Outbox, asyncio.Event], Awaitable[int]],
    setup: _Setup,
) -> int:
    import asyncio

    import aiohttp

    async def main() -> int:
        stop = _stop_event()
        outbox = setup.outbox()
        try:
            async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=60)) as session:
                code = await poll(session, outbox, stop)
            if stop.is_set():
                print(f"{setup.connector}: stopped by a signal", file=sys.stderr)
            return code
        finally:
            await outbox.close()
            _report(outbox.emitter)

    return asyncio.run(main())


def _stop_event() -> asyncio.Event:
    import asyncio

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    return stop


def _report(emitter: Emitter) -> None:
    accepted = sum(emitter.accepted.values())
    rejected = (
        ", ".join(
            f"{stream} {reason.value}={n}"
            for (stream, reason), n in sorted(emitter.rejected.items())
        )
        or "none"
    )
    print(f"accepted {accepted}; rejected: {rejected}", file=sys.stderr)


def _fetch(session: aiohttp.ClientSession, args: argparse.Namespace) -> Fetch:
    from connectors.poll import aiohttp_fetch, retrying_fetch

    cap = int(args.max_response_mib * 2**20)
    if cap < 1:
        msg = "--max-response-mib must be positive"
        raise RespublicaError(msg)
    return retrying_fetch(aiohttp_fetch(session, max_bytes=cap), retry_policy(args))


async def _poll_until_stopped(
    connector: str,
    poll_once: Callable[[], Awaitable[float]],
    setup: _Setup,
    args: argparse.Namespace,
    stop: asyncio.Event,
    resume: Callable[[int | None], str],
) -> None:
    """``run_polls``; when a request's retries run out, a ``RespublicaError`` that says what is
    safely in Kafka and how to resume (``resume(ms of the last complete poll)``)."""
    from connectors.poll import run_polls
    from connectors.retry import TransientError

    last_complete: list[int] = []

    async def poll() -> float:
        delay = await poll_once()
        last_complete[:] = [setup.clock.now_ms()]
        return delay

    try:
        await run_polls(poll, setup.clock, stop, args.polls)
    except TransientError as exc:
        where = resume(next(iter(last_complete), None))
        raise RespublicaError(_gave_up(connector, exc, args, where)) from exc


def _gave_up(connector: str, exc: TransientError, args: argparse.Namespace, resume: str) -> str:
    return (
        f"{connector}: gave up after --retry-attempts {args.retry_attempts} / "
        f"--retry-timeout {args.retry_timeout:g}s ({exc}); {resume}"
    )


def _iso(ms: int) -> str:
    return (
        datetime.fromtimestamp(ms / 1000, UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
    )


def _snapshot_resume(last_ms: int | None) -> str:
    """Snapshot feeds (GBFS, Waze) have no cursor: a restart reads the feed as it is then."""
    done = (
        f"the last complete poll was at {_iso(last_ms)} and all it read is in Kafka"
        if last_ms is not None
        else "no poll completed"
    )
    return f"{done}; run the same command again to resume from the feed's current state"


def _gbfs(args: argparse.Namespace) -> int:
    from connectors.pollers import GbfsPoller, GbfsSettings, rotation_counter

    retry_policy(args)  # bad --retry-* values fail before anything starts
    setup = _Setup(args, "gbfs")
    settings = GbfsSettings(
        feed_url=args.url,
        provider_id=args.provider_id,
        source=args.source,
        min_interval_s=args.min_interval,
    )
    counter = rotation_counter(setup.registry)

    async def poll(session: aiohttp.ClientSession, outbox: Outbox, stop: asyncio.Event) -> int:
        poller = GbfsPoller(settings, _fetch(session, args), setup.clock, outbox, counter)
        await _poll_until_stopped("gbfs", poller.poll_once, setup, args, stop, _snapshot_resume)
        print(
            f"gbfs: {poller.stats.polls} polls, {poller.stats.emitted} events, "
            f"{poller.stats.violations} id-rotation violations",
            file=sys.stderr,
        )
        return 0

    return _run(poll, setup)


def _mds(args: argparse.Namespace) -> int:
    from connectors.mds_poller import MdsPoller, MdsSettings
    from connectors.simulate.base import parse_start

    retry_policy(args)
    token = os.environ.get(MDS_TOKEN_ENV)
    if not token:
        msg = f"put the provider's MDS bearer token in ${MDS_TOKEN_ENV}"
        raise RespublicaError(msg)
    setup = _Setup(args, "mds")
    lateness = setup.contract.stream("vehicle_events").allowed_lateness
    since = (
        parse_start(args.since)
        if args.since
        else setup.clock.now_ms() - int(lateness.total_seconds() * 1000)
    )
    settings = MdsSettings(
        base_url=args.url,
        token=token,
        checkpoint=args.checkpoint,
        since_ms=since,
        interval_s=args.interval,
        lag_ms=int(args.lag * 1000),
        trips=not args.no_trips,
    )

    async def poll(session: aiohttp.ClientSession, outbox: Outbox, stop: asyncio.Event) -> int:
        poller = MdsPoller(settings, _fetch(session, args), setup.clock, outbox)

        def resume(_last_ms: int | None) -> str:
            read = ", ".join(f"{name} up to {_iso(ms)}" for name, ms in poller.read_up_to().items())
            return (
                f"everything read ({read}) is in Kafka and in the checkpoint {args.checkpoint}: "
                "run the same command again to resume from there"
            )

        try:
            await _poll_until_stopped("mds", poller.poll_once, setup, args, stop, resume)
        finally:
            s = poller.stats
            print(
                f"mds: {s.requests} requests, {s.pages} pages, {s.events} events, "
                f"{s.trips} trips, {s.vehicles} vehicles known, "
                f"{s.trips_not_ready} trip hours not ready yet",
                file=sys.stderr,
            )
        return 0

    return _run(poll, setup)


def _waze(args: argparse.Namespace) -> int:
    from connectors.pollers import WazePoller, WazeSettings

    retry_policy(args)
    setup = _Setup(args, "waze")
    settings = WazeSettings(feed_url=args.url, interval_s=args.interval)

    async def poll(session: aiohttp.ClientSession, outbox: Outbox, stop: asyncio.Event) -> int:
        poller = WazePoller(settings, _fetch(session, args), outbox)
        await _poll_until_stopped("waze", poller.poll_once, setup, args, stop, _snapshot_resume)
        return 0

    return _run(poll, setup)


def _rentals(args: argparse.Namespace) -> int:
    from connectors.rentals import import_activity
    from connectors.simulate.base import parse_start

    now = parse_start(args.now) if args.now else None
    setup = _Setup(args, "rentals-file")
    emitter, sink = setup.emitter((lambda: now) if now is not None else None)
    fmt = args.format or ("json" if args.file.suffix.lower() == ".json" else "csv")
    try:
        data = args.file.read_bytes()
    except OSError as exc:
        msg = f"{args.file}: cannot read ({type(exc).__name__})"
        raise RespublicaError(msg) from exc
    try:
        report = import_activity(data, fmt, emitter, setup.contract.stream(args.stream))
    finally:
        sink.close()
    for rejection in report.rejections:
        print(rejection)
    print(
        f"{report.rows} rows: {report.accepted} accepted, {len(report.rejections)} rejected "
        "(rejected rows are in the DLQ)",
        file=sys.stderr,
    )
    return 0 if not report.rejections else 2
