"""``respublica contracts validate|show|utility``, ``plan`` and ``apply``: contracts and their
topics (``utility``: ``broker/cli/utility.py``)."""

from __future__ import annotations

import argparse
import os
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from broker.cli.options import add_kafka_options, kafka_settings
from broker.kafka.defaults import CONTRACTS_ENV
from contracts import examples_dir

if TYPE_CHECKING:
    from broker.kafka.topics import Plan, TopicAdmin
    from contracts.model import Contract


def default_contract_paths() -> list[Path]:
    """``$RESPUBLICA_CONTRACTS`` (a path list) or the bundled examples."""
    env = os.environ.get(CONTRACTS_ENV)
    if env:
        return [Path(p) for p in env.split(os.pathsep) if p]
    return [examples_dir()]


def add_allow_outside_refs(parser: argparse.ArgumentParser) -> None:
    """``--allow-outside-refs``: contracts may read referenced files outside their folder."""
    parser.add_argument(
        "--allow-outside-refs",
        action="store_true",
        help="let contracts read schema, zone and territory files outside their own folder "
        "(and its sibling schemas/); refused by default",
    )


def register(commands: Any) -> None:
    group = commands.add_parser("contracts", help="validate and explain contracts")
    actions = group.add_subparsers(dest="action", required=True, metavar="ACTION")
    validate = actions.add_parser("validate", help="check contract files; exit 1 on any problem")
    validate.add_argument("paths", nargs="+", type=Path, help="contract files or directories")
    add_allow_outside_refs(validate)
    validate.set_defaults(handler=_validate)
    show = actions.add_parser("show", help="a plain-language summary of one contract")
    show.add_argument("contract", help="a contract id or file")
    show.add_argument(
        "--contracts",
        type=Path,
        action="append",
        help="where to look for ids (default: $RESPUBLICA_CONTRACTS or examples)",
    )
    add_allow_outside_refs(show)
    show.set_defaults(handler=_show)
    utility = actions.add_parser(
        "utility",
        help="the share of events and groups each view would publish, and nearby alternatives",
    )
    utility.add_argument("contract", help="a contract id or file")
    utility.add_argument(
        "--events",
        action="append",
        required=True,
        metavar="[STREAM=]FILE",
        help="NDJSON events of a stream (respublica simulate ... --stream S --out FILE); "
        "the stream may be left out when the contract has one; repeatable",
    )
    utility.add_argument(
        "--contracts",
        type=Path,
        action="append",
        help="where to look for ids (default: $RESPUBLICA_CONTRACTS or examples)",
    )
    add_allow_outside_refs(utility)
    utility.add_argument("--format", choices=("text", "json"), default="text")
    utility.set_defaults(handler=_utility)

    for name, handler, help_text in (
        ("plan", _plan, "the topics and ACLs the contracts need vs the live cluster"),
        (
            "apply",
            _apply,
            "create or alter the contracts' topics and ACLs (idempotent; never deletes a "
            "topic, removes only ACLs it created)",
        ),
    ):
        sub = commands.add_parser(name, help=help_text)
        sub.add_argument(
            "paths",
            nargs="*",
            type=Path,
            help="contract files or directories (default: $RESPUBLICA_CONTRACTS "
            "or the bundled examples)",
        )
        add_kafka_options(sub)
        add_allow_outside_refs(sub)
        sub.add_argument(
            "--allow-data-loss",
            action="store_true",
            help="allow shortening retention or switching cleanup to delete",
        )
        if name == "apply":
            sub.add_argument(
                "--allow-skipped",
                action="store_true",
                help="exit 0 even when a change the contracts need was skipped (a partition "
                "count to change by hand, a retention cut without --allow-data-loss); "
                "by default apply then exits 1",
            )
        sub.set_defaults(handler=handler)


def _validate(args: argparse.Namespace) -> int:
    from contracts import cli as contracts_cli

    code, text = contracts_cli.validate(args.paths, allow_outside=args.allow_outside_refs)
    print(text)
    return code


def _show(args: argparse.Namespace) -> int:
    from contracts import cli as contracts_cli

    search = args.contracts or default_contract_paths()
    print(contracts_cli.show(args.contract, search, allow_outside=args.allow_outside_refs))
    return 0


def _utility(args: argparse.Namespace) -> int:
    from broker.cli.utility import report

    return report(args, args.contracts or default_contract_paths())


def _load(args: argparse.Namespace) -> list[Contract]:
    from contracts import load_contracts

    return load_contracts(
        args.paths or default_contract_paths(),
        now=datetime.now(UTC),
        allow_outside=args.allow_outside_refs,
    )


def _compute_plan(args: argparse.Namespace, contracts: list[Contract]) -> tuple[TopicAdmin, Plan]:
    from broker.kafka import topics

    admin = topics.TopicAdmin(kafka_settings(args))
    return admin, topics.plan(admin, contracts, allow_data_loss=args.allow_data_loss)


def _acls(args: argparse.Namespace, contracts: list[Contract], *, apply: bool) -> int | None:
    """Print (and with ``apply``, carry out) the ACL plan; the number of ACL changes, or
    ``None`` when the cluster has no authorizer (nothing to enforce ACLs: skipped)."""
    from broker.kafka import acls

    with acls.AclAdmin(kafka_settings(args)) as admin:
        try:
            plan = acls.plan(admin, contracts)
        except acls.NoAuthorizer:
            print("ACLs: no authorizer: ACLs not enforced; skipped")
            return None
        if apply and plan.pending:
            acls.apply(admin, plan)
    print(plan.render())
    return len(plan.pending)


def _catalogue(args: argparse.Namespace, contracts: list[Contract], *, apply: bool) -> int:
    """Print (and with ``apply``, publish) the contracts for analysts on
    ``respublica._contracts``; the number of contracts written."""
    from broker.kafka import catalogue

    kafka = kafka_settings(args)
    plan = catalogue.plan_catalogue(kafka, contracts, now=datetime.now(UTC))
    if apply:
        catalogue.publish(kafka, plan)
    print(plan.render())
    return len(plan.pending)


def _plan(args: argparse.Namespace) -> int:
    contracts = _load(args)
    admin, plan = _compute_plan(args, contracts)
    with admin:
        print(plan.render())
    _acls(args, contracts, apply=False)
    _catalogue(args, contracts, apply=False)
    return 0


def _apply(args: argparse.Namespace) -> int:
    """Exit 1 when something the contracts need was skipped, unless ``--allow-skipped``."""
    from broker.kafka import topics

    contracts = _load(args)
    admin, plan = _compute_plan(args, contracts)
    with admin:
        if plan.pending:
            topics.apply(admin, plan)
        print(plan.render())
    acl_changes = _acls(args, contracts, apply=True)
    published = _catalogue(args, contracts, apply=True)
    print(apply_summary(plan, acl_changes, allow_skipped=args.allow_skipped, published=published))
    return 1 if plan.skipped and not args.allow_skipped else 0


def apply_summary(
    plan: Plan, acl_changes: int | None, *, allow_skipped: bool = False, published: int = 0
) -> str:
    """The last lines of ``apply``: what changed, and what was skipped and why."""
    from broker.kafka.topics import ActionKind

    created = sum(a.kind is ActionKind.CREATE for a in plan.actions)
    altered = sum(a.kind is ActionKind.ALTER for a in plan.actions)
    changes = created + altered + (acl_changes or 0) + published
    lines = []
    if changes:
        acl_part = f", {acl_changes} ACL change(s)" if acl_changes else ""
        published_part = f", {published} contract(s) published for analysts" if published else ""
        lines.append(
            f"Applied {changes} change(s): {created} topic(s) created, {altered} altered"
            f"{acl_part}{published_part}."
        )
    if plan.skipped:
        lines.append(
            f"Skipped {len(plan.skipped)} topic(s) with changes the contracts need; "
            "the cluster does not fully match the contracts:"
        )
        lines += [f"  {a.spec.name}: {item}" for a in plan.skipped for item in a.withheld]
        if not allow_skipped:
            lines.append("Exit status 1: fix the above, or pass --allow-skipped to accept it.")
    if acl_changes is None:
        lines.append("ACLs skipped: the cluster has no authorizer, so none would be enforced.")
    if not lines:
        lines.append("Nothing to do: the cluster already matches the contracts.")
    return "\n".join(lines)
