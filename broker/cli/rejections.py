"""``respublica rejections``: the broker operator looks rejected events up in a contract's DLQ.

By the ``request_id`` a provider quotes, by time range, by reason code; reason, field path,
stage, source and time of each, never the payload (``broker/ingest/rejections.py``).
"""

from __future__ import annotations

import argparse
from typing import Any

from broker.cli.options import add_kafka_options, kafka_settings
from broker.kafka.reasons import Reason


def register(commands: Any) -> None:
    sub = commands.add_parser(
        "rejections",
        help="look rejected events up in a contract's DLQ (by request id, time, reason); "
        "reasons and field paths, never the payload",
    )
    sub.add_argument("--contract", required=True, help="the contract id (reads dlq.<id>.*)")
    sub.add_argument("--stream", help="only this stream's DLQ (dlq.<contract>.<stream>)")
    sub.add_argument(
        "--request-id",
        help="the request_id of a gateway answer (or one item of it: <request_id>#<index>)",
    )
    sub.add_argument("--since", help="rejected at or after (ISO 8601 or ms since the epoch)")
    sub.add_argument("--until", help="rejected before (ISO 8601 or ms since the epoch)")
    sub.add_argument(
        "--reason",
        action="append",
        choices=[reason.value for reason in Reason],
        metavar="CODE",
        help="only this reason code (repeatable; codes: docs/reasons.md)",
    )
    sub.add_argument(
        "--limit",
        type=int,
        default=200,
        help="print at most the last N (default 200; the count covers all)",
    )
    sub.add_argument(
        "--format", choices=("text", "json"), default="text", help="a table, or JSON lines"
    )
    add_kafka_options(sub)
    sub.set_defaults(handler=_run)


def _run(args: argparse.Namespace) -> int:
    from broker.ingest.rejections import (
        RejectionQuery,
        find_rejections,
        render_json,
        render_text,
    )
    from broker.kafka.public_reader import parse_instant

    query = RejectionQuery(
        contract=args.contract,
        stream=args.stream,
        request_id=args.request_id,
        since_ms=parse_instant(args.since) if args.since else None,
        until_ms=parse_instant(args.until) if args.until else None,
        reasons=frozenset(args.reason or ()),
    )
    topics, found = find_rejections(kafka_settings(args), query)
    if args.format == "json":
        if found:
            print(render_json(found[-args.limit :] if args.limit > 0 else []))
    else:
        print(render_text(topics, found, args.limit))
    return 0
