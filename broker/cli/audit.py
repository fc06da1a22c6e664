"""``respublica audit CONTRACT``: the auditor's report of one contract (see broker/audit/run.py).

Exit code 0 when the audit finds no violation, 1 when it does (or cannot run), so that the
command can gate a CI job or page from cron. ``--audience public`` (the default) is the report
citizen watchdogs may read; ``--audience confidential`` adds the counts only the DPO may see
(broker/audit/audience.py). The report body holds no wall-clock time;
``--generated-at`` appends one after it.
"""

from __future__ import annotations

import argparse
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from broker.cli.contracts import add_allow_outside_refs, default_contract_paths
from broker.cli.options import add_kafka_options, kafka_settings


def register(commands: Any) -> None:
    audit = commands.add_parser(
        "audit",
        help="the auditor's report of a contract: reconciliation, terms vs reality, "
        "canary scan (exit 1 on a violation)",
    )
    audit.add_argument("contract", help="a contract id or file")
    audit.add_argument(
        "--contracts",
        type=Path,
        action="append",
        help="where to look for ids (default: $RESPUBLICA_CONTRACTS or examples)",
    )
    add_allow_outside_refs(audit)
    audit.add_argument(
        "--since",
        help="start of the period (ISO 8601 or ms since the epoch; "
        "default: the beginning of the topics)",
    )
    audit.add_argument(
        "--until", help="end of the period, exclusive (default: none, up to the end of the topics)"
    )
    audit.add_argument(
        "--format", choices=("md", "json", "html"), default="md", help="report format (default md)"
    )
    audit.add_argument(
        "--audience",
        choices=("public", "confidential"),
        default="public",
        help="public (default): nothing a suppressed group's size can be derived from; "
        "confidential: every count, for the DPO",
    )
    audit.add_argument("--out", type=Path, help="write the report to this file (default stdout)")
    add_kafka_options(audit)
    audit.add_argument(
        "--generated-at",
        action="store_true",
        help="append the time of the run after the report body",
    )
    audit.set_defaults(handler=_audit)


def _audit(args: argparse.Namespace) -> int:
    from broker.audit.model import Period
    from broker.audit.render import render
    from broker.audit.run import audit, exit_code  # local: keeps `respublica --help` fast
    from broker.kafka.public_reader import iso_utc, parse_instant
    from contracts.cli import find_contract

    now = datetime.now(UTC)
    contract = find_contract(
        args.contract,
        args.contracts or default_contract_paths(),
        now=now,
        allow_outside=args.allow_outside_refs,
    )
    period = Period(
        None if args.since is None else parse_instant(args.since),
        None if args.until is None else parse_instant(args.until),
    )
    report = audit(contract, kafka_settings(args), period, audience=args.audience)
    stamp = iso_utc(int(now.timestamp() * 1000)) if args.generated_at else None
    text = render(report, args.format, stamp)
    if args.out is not None:
        args.out.write_text(text, encoding="utf-8")
        print(
            f"{'OK' if report['ok'] else 'VIOLATIONS'}: {args.out} "
            f"({report['summary']['violations']} violation(s), "
            f"{report['summary']['warnings']} warning(s); {report['audience']} report)",
            file=sys.stderr,
        )
    else:
        sys.stdout.write(text)
    return exit_code(report)
