"""``respublica keys rotate-master``: re-seal every live key record under a new master key.

See ``broker/worker/keystore.py`` (``KeyStore.reseal``) and docs/security.md ("Keys").
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from broker.cli.contracts import add_allow_outside_refs, default_contract_paths
from broker.cli.options import add_kafka_options, kafka_settings
from broker.cli.worker import MASTER_KEY_ENV, NEW_MASTER_KEY_ENV

ROTATE_HELP = f"""\
Re-seal every live record of each contract's key topic (respublica.<c>.keys) under a new
master key. The current master key comes from --master-key-file or ${MASTER_KEY_ENV}, the
new one from --new-master-key-file or ${NEW_MASTER_KEY_ENV} (32 bytes, hex or base64).
Records already under the new key are left alone (the command can be run again); keys below
a destruction floor and losing candidates are tombstoned, never re-sealed; records that fail
authentication are reported and never re-sealed. Procedure: (1) restart every worker with
${NEW_MASTER_KEY_ENV} set as well (it then seals under the new key and reads both); (2) run
this command; (3) restart the workers with ${MASTER_KEY_ENV} set to the new key and
${NEW_MASTER_KEY_ENV} unset; (4) destroy the old key. See docs/security.md ("Keys")."""


def register(commands: Any) -> None:
    keys = commands.add_parser("keys", help="manage the master key sealing pseudonym keys")
    actions = keys.add_subparsers(dest="action", required=True, metavar="ACTION")
    rotate = actions.add_parser(
        "rotate-master",
        help="re-seal every live key record under a new master key",
        description=ROTATE_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    rotate.add_argument(
        "--contracts",
        type=Path,
        action="append",
        help="contract files or directories (default: $RESPUBLICA_CONTRACTS "
        "or the bundled examples); repeatable",
    )
    add_allow_outside_refs(rotate)
    add_kafka_options(rotate)
    rotate.add_argument(
        "--master-key-file",
        type=Path,
        default=None,
        help=f"the master key in use (default: ${MASTER_KEY_ENV})",
    )
    rotate.add_argument(
        "--new-master-key-file",
        type=Path,
        default=None,
        help=f"the new master key (default: ${NEW_MASTER_KEY_ENV})",
    )
    rotate.set_defaults(handler=_rotate_master)


def _rotate_master(args: argparse.Namespace) -> int:
    from datetime import UTC, datetime

    from broker.kafka import topics
    from broker.kafka.clients import KafkaKeysLog, WorkerClients
    from broker.worker.keystore import KeyStore, load_master_keys
    from contracts import load_contracts

    masters = load_master_keys(args.master_key_file, args.new_master_key_file, require_new=True)
    contracts = load_contracts(
        args.contracts or default_contract_paths(),
        now=datetime.now(UTC),
        allow_outside=args.allow_outside_refs,
    )
    clients = WorkerClients(kafka_settings(args), "keys-rotation")
    for contract in contracts:
        log = KafkaKeysLog(clients, topics.keys_topic(contract))
        try:
            report = KeyStore(contract.id, log, masters, "rotation").reseal()
        finally:
            log.close()
        rejected = ", ".join(f"{n} {reason}" for reason, n in sorted(report.rejected.items()))
        print(
            f"{contract.id}: {report.resealed} re-sealed, {report.tombstoned} tombstoned, "
            f"{report.already_current} already under the new key"
            + (f"; ignored (not authentic): {rejected}" if rejected else "")
        )
    return 0
