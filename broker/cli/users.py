"""``respublica users add|rotate|remove|list``: SCRAM-SHA-512 users of the cluster.

``add`` and ``rotate`` set a random password and write it, with the admin's address and TLS
settings, to a client config file (mode 0600) the user passes as ``--kafka-config``; only the
file's path is printed. ``list`` prints user names and mechanisms. The ACLs each principal
gets come from the contracts (``respublica apply``, ``docs/security.md``), not from here.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from broker.cli.options import add_kafka_options, kafka_settings


def register(commands: Any) -> None:
    group = commands.add_parser(
        "users", help="add, rotate, remove or list the cluster's SCRAM users (as the admin)"
    )
    actions = group.add_subparsers(dest="action", required=True, metavar="ACTION")
    for name, handler, help_text in (
        ("add", _add, "create a user with a random password; write its client config"),
        ("rotate", _rotate, "give a user a new random password; write its client config"),
    ):
        sub = actions.add_parser(name, help=help_text)
        sub.add_argument("name", help="the user name (its principal is User:NAME)")
        sub.add_argument(
            "--out",
            type=Path,
            help="client config file to write, mode 0600 (default: ./NAME.kafka.yaml)",
        )
        add_kafka_options(sub)
        sub.set_defaults(handler=handler)
    remove = actions.add_parser("remove", help="delete a user's SCRAM credential")
    remove.add_argument("name", help="the user name")
    add_kafka_options(remove)
    remove.set_defaults(handler=_remove)
    listing = actions.add_parser("list", help="user names and their SCRAM mechanisms")
    add_kafka_options(listing)
    listing.set_defaults(handler=_list)


def _add(args: argparse.Namespace) -> int:
    return _set_password(args, exists=False)


def _rotate(args: argparse.Namespace) -> int:
    return _set_password(args, exists=True)


def _set_password(args: argparse.Namespace, *, exists: bool) -> int:
    from broker.kafka import users

    name = users.check_name(args.name)
    admin_settings = kafka_settings(args)
    out = args.out or Path(f"{name}.kafka.yaml")
    password = users.new_password()
    config = users.client_config(admin_settings, name, password)
    with users.ScramUsers(admin_settings) as scram:
        if scram.exists(name) != exists:
            hint = "use `respublica users add`" if exists else "use `respublica users rotate`"
            state = "has no" if exists else "already has a"
            msg = f"user {name} {state} SCRAM-SHA-512 credential; {hint}"
            raise users.UserAdminError(msg)
        written = users.write_client_config(out, config, lambda: scram.upsert(name, password))
    print(written)
    return 0


def _remove(args: argparse.Namespace) -> int:
    from broker.kafka import users

    name = users.check_name(args.name)
    with users.ScramUsers(kafka_settings(args)) as scram:
        if not scram.exists(name):
            msg = f"user {name} has no SCRAM-SHA-512 credential"
            raise users.UserAdminError(msg)
        scram.remove(name)
    print(f"removed the SCRAM-SHA-512 credential of {name}")
    return 0


def _list(args: argparse.Namespace) -> int:
    from broker.kafka import users

    with users.ScramUsers(kafka_settings(args)) as scram:
        found = scram.list()
    for name, mechanisms in found.items():
        print(f"{name}\t{', '.join(mechanisms)}")
    if not found:
        print("no SCRAM users")
    return 0
