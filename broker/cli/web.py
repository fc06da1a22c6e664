"""``respublica web``: the read-only web pages of the views a principal may read.

See ``broker/web/server.py``.
"""

from __future__ import annotations

import argparse
import logging
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from broker.cli.contracts import add_allow_outside_refs, default_contract_paths
from broker.cli.options import add_kafka_options, add_log_options, kafka_settings, setup_logging


def register(commands: Any) -> None:
    web = commands.add_parser(
        "web", help="serve a live map, table and downloads of the views a principal may read"
    )
    web.add_argument(
        "--contracts",
        type=Path,
        action="append",
        help="contract files or directories (default: $RESPUBLICA_CONTRACTS "
        "or the bundled examples); repeatable",
    )
    add_allow_outside_refs(web)
    add_kafka_options(web)
    web.add_argument("--host", default="127.0.0.1", help="address (default 127.0.0.1)")
    web.add_argument("--port", type=int, default=8090, help="port (default 8090)")
    web.add_argument(
        "--tile-url",
        default=None,
        help="a raster tile layer under the map, https://host/{z}/{x}/{y}.png (default: none, "
        "the territory outline only)",
    )
    web.add_argument("--tile-attribution", default=None, help="credit line of the tile layer")
    web.add_argument(
        "--allowed-host",
        action="append",
        default=[],
        type=_allowed_host,
        metavar="NAME[:PORT]",
        help="a Host name the server answers to besides 127.0.0.1, localhost and [::1] on its "
        "port (the public name behind a reverse proxy); repeatable",
    )
    web.add_argument(
        "--max-event-streams",
        type=_positive,
        default=256,
        help="live event streams open at once (default 256; 503 beyond)",
    )
    web.add_argument(
        "--max-event-streams-per-peer",
        type=_positive,
        default=16,
        help="live event streams open at once from one address (default 16; behind a reverse "
        "proxy every client has the proxy's address)",
    )
    add_log_options(web)
    web.set_defaults(handler=_web)


def _allowed_host(text: str) -> str:
    from broker.web.guard import HostError, allowed_host

    try:
        return allowed_host(text)
    except HostError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        msg = "expected a whole number of at least 1"
        raise argparse.ArgumentTypeError(msg)
    return value


def _web(args: argparse.Namespace) -> int:
    from aiohttp import web

    from broker.web.server import WebConfig, make_web_app
    from broker.web.streams import StreamLimits
    from contracts import load_contracts

    setup_logging(args)
    # One consumer thread per view decodes Avro while kafka-python's I/O thread waits for the
    # GIL: it then warns of a "blocking" task many times a second. Harmless here; not logged.
    logging.getLogger("kafka.net.selector").setLevel(logging.ERROR)
    kafka = kafka_settings(args)
    contracts = load_contracts(
        args.contracts or default_contract_paths(),
        now=datetime.now(UTC),
        allow_outside=args.allow_outside_refs,
    )
    config = WebConfig(
        host=args.host,
        port=args.port,
        tile_url=args.tile_url,
        tile_attribution=args.tile_attribution,
        allowed_hosts=tuple(args.allowed_host),
        streams=StreamLimits(
            total=args.max_event_streams, per_peer=args.max_event_streams_per_peer
        ),
    )
    print(
        f"serving the views {kafka.username or 'this client'} may read on "
        f"http://{args.host}:{args.port}/",
        flush=True,
    )
    # Open pages hold an event stream each: on SIGTERM, give them 2 s, not aiohttp's 60.
    web.run_app(
        make_web_app(kafka, contracts, config),
        host=args.host,
        port=args.port,
        print=None,
        shutdown_timeout=2.0,
    )
    return 0
