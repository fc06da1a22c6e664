"""Make every secret the compose stack and the Kubernetes manifests need, outside the repository.

    .venv/bin/python deploy/make_secrets.py ~/.config/respublica/secrets

writes, into a new folder (mode 0700; it refuses one that already holds files):

* ``kafka/``: mounted read-only into the broker (compose) or turned into its Secrets (k8s):
  ``ca.pem`` (the CA the clients trust), ``broker.pem`` (the broker's PKCS#8 key, its
  certificate and the CA: ``ssl.keystore.type=PEM``), ``users/<name>`` (one SCRAM password per
  service principal, read once when the storage is formatted), ``admin.properties`` (the
  admin's client settings for Kafka's own tools, the healthcheck among them);
* ``ca.key``: the CA's key, only needed to issue another broker certificate: keep it offline;
* ``kafka.env``: the broker's SASL login (JAAS) settings, ``KAFKA_*`` variables;
* ``<role>.env``: ``RESPUBLICA_KAFKA_USERNAME`` and ``..._PASSWORD`` of one principal:
  ``admin.env`` (apply, users), ``ingest.env`` (gateway, validator), ``auditor.env`` (audit),
  ``worker.<contract>.env`` (the policy worker of one contract);
* ``admin.kafka.yaml``, ``auditor.kafka.yaml``: ``--kafka-config`` files for the host
  (``127.0.0.1:9092``, the compose broker's published listener): ``respublica users add``,
  ``respublica audit``;
* ``gateway-tokens.yaml`` (token hashes, read by the gateway) and ``provider-tokens/<id>``
  (each provider's bearer token, to hand over by a secure channel);
* ``grafana_admin_password``;
* ``k8s-secrets.yaml``: the same values as Kubernetes Secrets, for ``kubectl apply -f``.

The folder is 0700 and every file 0600, except what a container reads through a bind mount
(``kafka/``, ``gateway-tokens.yaml``, ``grafana_admin_password``): those are 0644 in 0755
sub-folders, because the containers run as other users (Kafka 1000, respublica 10001, Grafana
472); the 0700 folder above them keeps other local users out. Passwords come from
``secrets.token_urlsafe`` (letters, digits, ``-`` and ``_``: safe inside Kafka's
``--add-scram 'SCRAM-SHA-512=[name=...,password=...]'`` and JAAS quoting).
"""

from __future__ import annotations

import argparse
import datetime
import hashlib
import os
import secrets
import sys
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import yaml

from broker.kafka.tls import issue

REPO = Path(__file__).resolve().parents[1]
CONTRACTS = REPO / "contracts" / "examples"
NAMESPACE = "respublica"
VALID_DAYS = 825
# Every name a client may reach the broker by: compose (kafka, and 127.0.0.1 from the host)
# and the Kubernetes StatefulSet's pod behind its headless Service.
BROKER_NAMES = (
    "kafka",
    "localhost",
    "respublica-kafka",
    f"respublica-kafka.{NAMESPACE}.svc",
    f"respublica-kafka.{NAMESPACE}.svc.cluster.local",
    f"respublica-kafka-0.respublica-kafka.{NAMESPACE}.svc",
    f"respublica-kafka-0.respublica-kafka.{NAMESPACE}.svc.cluster.local",
)
BROKER_IPS = ("127.0.0.1",)
ADMIN = "admin"
INGEST = "respublica-ingest"
AUDITOR = "respublica-auditor"
SCRAM_LOGIN = "org.apache.kafka.common.security.scram.ScramLoginModule"
PLAIN_LOGIN = "org.apache.kafka.common.security.plain.PlainLoginModule"
# Broker listeners that authenticate clients with SCRAM (compose: INTERNAL and HOST;
# Kubernetes: CLIENT). Each needs a JAAS entry; the inter-broker one logs in as the admin.
SCRAM_LISTENERS = ("internal", "host", "client")


class SecretsError(Exception):
    """The output folder cannot be used, or the contracts cannot be read."""


def roles(contract_ids: Iterable[str]) -> dict[str, str]:
    """Role file stem -> Kafka user name: one principal per role (docs/security.md)."""
    found = {"admin": ADMIN, "ingest": INGEST, "auditor": AUDITOR}
    for cid in sorted(contract_ids):
        found[f"worker.{cid}"] = f"respublica-worker.{cid}"
    return found


def password() -> str:
    """A random password of 32 URL-safe characters (192 bits)."""
    return secrets.token_urlsafe(24)


def broker_env(admin_password: str) -> dict[str, str]:
    """The broker's ``KAFKA_*`` SASL login settings (the image maps them to properties)."""
    scram = f'{SCRAM_LOGIN} required username="{ADMIN}" password="{admin_password}";'
    plain = (
        f'{PLAIN_LOGIN} required username="{ADMIN}" password="{admin_password}" '
        f'user_{ADMIN}="{admin_password}";'
    )
    env = {
        f"KAFKA_LISTENER_NAME_{name.upper()}_SCRAM___SHA___512_SASL_JAAS_CONFIG": scram
        for name in SCRAM_LISTENERS
    }
    env["KAFKA_LISTENER_NAME_CONTROLLER_PLAIN_SASL_JAAS_CONFIG"] = plain
    return env


def admin_properties(admin_password: str, ca_path: str) -> str:
    """Client properties for Kafka's own tools (kafka-acls.sh, the healthcheck) as the admin."""
    return (
        "security.protocol=SASL_SSL\n"
        "sasl.mechanism=SCRAM-SHA-512\n"
        f'sasl.jaas.config={SCRAM_LOGIN} required username="{ADMIN}" '
        f'password="{admin_password}";\n'
        "ssl.truststore.type=PEM\n"
        f"ssl.truststore.location={ca_path}\n"
    )


def make_tls(now: datetime.datetime) -> tuple[bytes, bytes, bytes]:
    """A CA and a broker certificate for ``BROKER_NAMES``: (ca.pem, ca.key, broker.pem)."""
    return issue("respublica deploy CA", "respublica-kafka", BROKER_NAMES, BROKER_IPS, now)


def load_providers(contracts_dir: Path) -> dict[str, list[str]]:
    """Provider id -> the ids of its contracts, read from the contract files' YAML."""
    providers: dict[str, list[str]] = {}
    for path in sorted(contracts_dir.glob("*.yaml")):
        doc = yaml.safe_load(path.read_text(encoding="utf-8"))
        if not isinstance(doc, dict) or "id" not in doc or "provider" not in doc:
            msg = f"{path} is not a contract (no id or provider)"
            raise SecretsError(msg)
        providers.setdefault(str(doc["provider"]["id"]), []).append(str(doc["id"]))
    if not providers:
        msg = f"no contract in {contracts_dir}"
        raise SecretsError(msg)
    return providers


def k8s_secret(name: str, component: str, data: dict[str, str]) -> dict[str, Any]:
    """One Opaque Secret in the respublica namespace."""
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {
            "name": name,
            "namespace": NAMESPACE,
            "labels": {
                "app.kubernetes.io/name": "respublica",
                "app.kubernetes.io/part-of": "respublica",
                "app.kubernetes.io/component": component,
            },
        },
        "type": "Opaque",
        "stringData": data,
    }


def secret_name(role: str) -> str:
    """The Kubernetes Secret of a role: ``respublica-kafka-worker-<c>`` for ``worker.<c>``."""
    return "respublica-kafka-" + role.replace(".", "-")


def generate(out: Path, contracts_dir: Path = CONTRACTS) -> None:
    """Write every file the module docstring lists into ``out`` (new or empty)."""
    if out.exists() and any(out.iterdir()):
        msg = f"{out} already holds files: rotate by hand or choose a new folder"
        raise SecretsError(msg)
    providers = load_providers(contracts_dir)
    users = roles(cid for ids in providers.values() for cid in ids)
    passwords = {user: password() for user in users.values()}
    ca_pem, ca_key, broker_pem = make_tls(datetime.datetime.now(datetime.UTC))
    out.mkdir(parents=True, exist_ok=True)
    out.chmod(0o700)
    kafka = out / "kafka"
    _shared(kafka / "ca.pem", ca_pem)
    _shared(kafka / "broker.pem", broker_pem)
    for user, secret in passwords.items():
        _shared(kafka / "users" / user, secret.encode())
    ca_in_broker = "/etc/kafka/respublica/ca.pem"
    _shared(kafka / "admin.properties", admin_properties(passwords[ADMIN], ca_in_broker).encode())
    _private(out / "ca.key", ca_key)
    jaas = broker_env(passwords[ADMIN])
    _private(out / "kafka.env", _env_file(jaas))
    for role, user in users.items():
        env = {"RESPUBLICA_KAFKA_USERNAME": user, "RESPUBLICA_KAFKA_PASSWORD": passwords[user]}
        _private(out / f"{role}.env", _env_file(env))
    for role in ("admin", "auditor"):
        host = {
            "bootstrap": "127.0.0.1:9092",
            "security_protocol": "SASL_SSL",
            "sasl_mechanism": "SCRAM-SHA-512",
            "username": users[role],
            "password": passwords[users[role]],
            "ssl_cafile": "kafka/ca.pem",  # relative to this file
        }
        _private(out / f"{role}.kafka.yaml", yaml.safe_dump(host, sort_keys=False).encode())
    tokens = {pid: secrets.token_urlsafe(32) for pid in providers}
    for pid, token in tokens.items():
        _private(out / "provider-tokens" / pid, token.encode())
    grants = {
        "providers": [
            {
                "id": pid,
                "token_sha256": hashlib.sha256(tokens[pid].encode()).hexdigest(),
                "contracts": ids,
            }
            for pid, ids in providers.items()
        ]
    }
    tokens_yaml = yaml.safe_dump(grants, sort_keys=False)
    _shared(out / "gateway-tokens.yaml", tokens_yaml.encode())
    grafana = password()
    _shared(out / "grafana_admin_password", grafana.encode())
    objects = [
        k8s_secret("respublica-kafka-tls", "kafka", {"broker.pem": broker_pem.decode()}),
        k8s_secret("respublica-kafka-ca", "kafka", {"ca.pem": ca_pem.decode()}),
        k8s_secret("respublica-kafka-broker", "kafka", jaas),
        k8s_secret("respublica-kafka-users", "kafka", passwords),
        *(
            k8s_secret(
                secret_name(role),
                role.split(".")[0],
                {"RESPUBLICA_KAFKA_USERNAME": user, "RESPUBLICA_KAFKA_PASSWORD": passwords[user]},
            )
            for role, user in users.items()
        ),
        k8s_secret("respublica-gateway-tokens", "gateway", {"tokens.yaml": tokens_yaml}),
    ]
    text = "".join("---\n" + yaml.safe_dump(o, sort_keys=False) for o in objects)
    _private(out / "k8s-secrets.yaml", text.encode())


def _env_file(values: dict[str, str]) -> bytes:
    # Compose env files take the rest of the line literally: no quoting needed or wanted.
    return "".join(f"{key}={value}\n" for key, value in values.items()).encode()


def _private(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)


def _shared(path: Path, data: bytes) -> None:
    """Readable by a container's own user through a bind mount (the 0700 root guards it)."""
    for parent in reversed(path.parents):
        if parent.name and not parent.exists():
            parent.mkdir()
            parent.chmod(0o755)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)
    path.chmod(0o644)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("out", type=Path, help="a new folder outside the repository")
    parser.add_argument("--contracts", type=Path, default=CONTRACTS, help="contract folder")
    args = parser.parse_args(argv)
    out = args.out.expanduser().resolve()
    if out.is_relative_to(REPO):
        print(f"make_secrets: {out} is inside the repository; choose a folder outside it")
        return 1
    try:
        generate(out, args.contracts)
    except SecretsError as exc:
        print(f"make_secrets: {exc}", file=sys.stderr)
        return 1
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
