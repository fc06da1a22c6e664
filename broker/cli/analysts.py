"""``respublica subscribe``, ``export`` and ``schemas serve``: the city analyst's commands."""

from __future__ import annotations

import argparse
import os
import sys
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

from broker.cli.contracts import add_allow_outside_refs, default_contract_paths
from broker.cli.options import add_kafka_options, kafka_settings
from broker.kafka.defaults import CONTRACTS_ENV

if TYPE_CHECKING:
    from contracts.model import Contract


def register(commands: Any) -> None:
    subscribe = commands.add_parser("subscribe", help="print a view's releases as they come")
    _common(subscribe)
    subscribe.add_argument(
        "--from-beginning",
        action="store_true",
        help="print every release so far first (default: new ones only)",
    )
    subscribe.add_argument(
        "--since",
        help="only windows starting at or after this time (ms since the epoch or ISO 8601)",
    )
    subscribe.add_argument(
        "--max-windows",
        type=int,
        default=None,
        help="stop after this many windows (default: until Ctrl-C)",
    )
    subscribe.set_defaults(handler=_subscribe)

    export = commands.add_parser("export", help="write a view's releases as open-data files")
    _common(export)
    export.add_argument(
        "--format",
        required=True,
        choices=("csv", "geojson", "parquet", "mds-reports", "eu-str-activity"),
        help="open-data files, or a regulatory file: mds-reports (MDS 2.0.2 Reports, monthly "
        "trips) or eu-str-activity (EU 2024/1028 nights and guests per area and period)",
    )
    export.add_argument("--out", required=True, type=Path, help="output file")
    export.add_argument("--since", help="first window start (ms or ISO 8601, inclusive)")
    export.add_argument("--until", help="last window start (ms or ISO 8601, exclusive)")
    export.add_argument(
        "--include-reports", action="store_true", help="also write the windows' suppression reports"
    )
    regulatory = export.add_argument_group("mds-reports and eu-str-activity")
    regulatory.add_argument(
        "--timezone", default="UTC", help="IANA zone of the calendar months (default UTC)"
    )
    regulatory.add_argument(
        "--geography", help="the view's area dimension (default: its first h3/zones/grid one)"
    )
    regulatory.add_argument(
        "--vehicle-type", help="mds-reports: the MDS vehicle type, when the view has none"
    )
    regulatory.add_argument(
        "--provider-id", help="mds-reports: the provider's MDS UUID (default: empty)"
    )
    export.set_defaults(handler=_export)

    schemas = commands.add_parser("schemas", help="serve the Avro schemas to Kafka tools")
    actions = schemas.add_subparsers(dest="action", required=True, metavar="ACTION")
    serve = actions.add_parser("serve", help="a read-only Confluent Schema Registry API")
    serve.add_argument(
        "--contracts",
        type=Path,
        action="append",
        help="contract files or directories (default: $RESPUBLICA_CONTRACTS "
        "or the bundled examples); repeatable",
    )
    add_allow_outside_refs(serve)
    serve.add_argument("--host", default="127.0.0.1", help="address (default 127.0.0.1)")
    serve.add_argument("--port", type=int, default=8081, help="port (default 8081)")
    serve.set_defaults(handler=_serve)


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "contract",
        help="a contract id (its terms, schemas and zones are read from the broker, where "
        "`respublica apply` publishes them) or a contract file",
    )
    parser.add_argument("view", help="a view of the contract")
    add_kafka_options(parser)
    parser.add_argument(
        "--contracts",
        type=Path,
        action="append",
        help="look the id up in these contract files or directories instead of on the broker "
        f"(default: ${CONTRACTS_ENV} when set); repeatable",
    )
    add_allow_outside_refs(parser)


def _contract(args: argparse.Namespace) -> Contract:
    """A contract file; an id in ``--contracts`` or ``$RESPUBLICA_CONTRACTS``; else the
    contract of that id as the broker's operator applied it (``respublica._contracts``)."""
    from contracts.cli import find_contract

    local = args.contracts or (default_contract_paths() if os.environ.get(CONTRACTS_ENV) else [])
    if local or Path(args.contract).is_file():
        return find_contract(
            args.contract, local, now=datetime.now(UTC), allow_outside=args.allow_outside_refs
        )
    from broker.kafka.catalogue import fetch_contract

    return fetch_contract(kafka_settings(args), args.contract, now=datetime.now(UTC))


def _instant(text: str | None) -> int | None:
    from broker.kafka.public_reader import parse_instant

    return None if text is None else parse_instant(text)


def _subscribe(args: argparse.Namespace) -> int:
    from broker.analysts.subscribe import print_releases
    from broker.kafka.public_reader import follow_view, resolve_view

    contract = _contract(args)
    view = resolve_view(contract, args.view)
    rows = follow_view(
        kafka_settings(args),
        contract,
        view,
        from_beginning=args.from_beginning or args.since is not None,
        since_ms=_instant(args.since),
    )
    try:
        print_releases(rows, view, partial(print, flush=True), max_windows=args.max_windows)
    finally:
        rows.close()  # closes the consumer now, not at garbage collection
    return 0


def _export(args: argparse.Namespace) -> int:
    from broker.analysts.export import RegulatoryOptions, export
    from broker.kafka.public_reader import read_view

    contract = _contract(args)
    since, until = _instant(args.since), _instant(args.until)
    contents = read_view(kafka_settings(args), contract, args.view, since_ms=since, until_ms=until)
    written = export(
        contents,
        args.out,
        args.format,
        include_reports=args.include_reports,
        since_ms=since,
        until_ms=until,
        regulatory=RegulatoryOptions(
            timezone=args.timezone,
            geography=args.geography,
            vehicle_type=args.vehicle_type,
            provider_id=args.provider_id,
        ),
    )
    print(
        f"{len(contents.groups)} groups of {len(contents.windows())} windows from "
        f"{contents.topic} → {', '.join(str(p) for p in written)}"
    )
    if contents.undecodable:
        print(
            f"warning: {len(contents.undecodable)} records of another schema were skipped",
            file=sys.stderr,
        )
    left = contents.left_out
    if left:
        print(
            f"warning: left out {left.windows_without_report} window(s) without a suppression "
            f"report and {left.foreign_policy_hash} record(s) whose policy hash is not the "
            "contract's (counted in the metadata: left_out)",
            file=sys.stderr,
        )
    return 0


def _serve(args: argparse.Namespace) -> int:
    from aiohttp import web

    from broker.kafka.schema_registry import make_schema_app
    from contracts import load_contracts

    contracts = load_contracts(
        args.contracts or default_contract_paths(),
        now=datetime.now(UTC),
        allow_outside=args.allow_outside_refs,
    )
    print(
        f"serving the schemas of {len(contracts)} contracts on "
        f"http://{args.host}:{args.port}/subjects",
        flush=True,
    )
    web.run_app(make_schema_app(contracts), host=args.host, port=args.port, print=None)
    return 0
