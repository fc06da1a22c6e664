"""The deployment is secure as shipped, checked statically (no Docker, no kubectl).

The broker (compose and Kubernetes) runs the StandardAuthorizer with nothing allowed by default
and only the admin as super-user, and reaches clients over SASL_SSL (SCRAM-SHA-512, PEM key
store from a mounted secret) only; every component logs in as its own principal from its own
Secret or env file; NetworkPolicies deny by default and open only what each role needs;
Grafana has no default password and no anonymous access; ``deploy/make_secrets.py`` makes
every secret these files name, consistently.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.util
import ipaddress
import shutil
import stat
import subprocess
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import yaml
from cryptography import x509

from broker.ingest.auth import load_tokens
from broker.kafka.acls import ADMIN_PRINCIPAL, AUDITOR_PRINCIPAL, INGEST_PRINCIPAL, worker_principal

pytestmark = pytest.mark.unit

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy"
K8S = DEPLOY / "k8s"
LOOPBACK = ("127.0.0.1", "localhost", "[::1]")
CONTRACT_IDS = ("bordeaux-navigation", "lyon-micromobility", "paris-str")
AUTHORIZER = "org.apache.kafka.metadata.authorizer.StandardAuthorizer"


def _load_make_secrets() -> ModuleType:
    spec = importlib.util.spec_from_file_location("make_secrets", DEPLOY / "make_secrets.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _docs(path: Path) -> list[Any]:
    return [d for d in yaml.safe_load_all(path.read_text(encoding="utf-8")) if d is not None]


@functools.cache
def _k8s() -> tuple[dict[str, Any], ...]:
    return tuple(doc for path in sorted(K8S.glob("*.yaml")) for doc in _docs(path))


def _objects(kind: str) -> list[dict[str, Any]]:
    return [doc for doc in _k8s() if doc.get("kind") == kind]


@functools.cache
def _compose() -> dict[str, Any]:
    compose: dict[str, Any] = yaml.safe_load((DEPLOY / "docker-compose.yml").read_text())
    return compose


def _pod_templates() -> dict[str, dict[str, Any]]:
    """Every pod template of deploy/k8s by workload name."""
    found = {}
    for kind in ("Deployment", "StatefulSet", "Job"):
        for obj in _objects(kind):
            found[obj["metadata"]["name"]] = obj["spec"]["template"]
    for obj in _objects("CronJob"):
        found[obj["metadata"]["name"]] = obj["spec"]["jobTemplate"]["spec"]["template"]
    return found


def _property(name: str) -> str:
    """The server property the apache/kafka image makes of a KAFKA_* variable."""
    key = name.removeprefix("KAFKA_").lower().replace("_", ".")
    return key.replace("...", "-").replace("..", "_")


def _properties(env: dict[str, Any]) -> dict[str, str]:
    return {_property(k): str(v) for k, v in env.items() if k.startswith("KAFKA_")}


def _compose_broker() -> dict[str, str]:
    return _properties(_compose()["services"]["kafka"]["environment"])


def _k8s_broker() -> dict[str, str]:
    (kafka,) = _objects("StatefulSet")
    (container,) = kafka["spec"]["template"]["spec"]["containers"]
    return _properties({e["name"]: e["value"] for e in container["env"] if "value" in e})


BROKERS = {"compose": _compose_broker, "k8s": _k8s_broker}


def _listeners(value: str) -> dict[str, str]:
    return dict(item.split("://", 1) for item in value.split(",") if item)


# ------------------------------------------------------------------ the broker


@pytest.mark.parametrize("where", sorted(BROKERS))
def test_broker_runs_the_authorizer_with_nothing_allowed_by_default(where: str) -> None:
    props = BROKERS[where]()
    assert props.get("authorizer.class.name") == AUTHORIZER
    assert props.get("allow.everyone.if.no.acl.found") == "false"
    assert props.get("super.users") == ADMIN_PRINCIPAL, "only the admin is a super-user"
    assert props.get("auto.create.topics.enable") == "false"


@pytest.mark.parametrize("where", sorted(BROKERS))
def test_clients_reach_the_broker_over_sasl_ssl_with_scram_only(where: str) -> None:
    props = BROKERS[where]()
    protocols = dict(item.split(":") for item in props["listener.security.protocol.map"].split(","))
    listeners = _listeners(props["listeners"])
    advertised = _listeners(props.get("advertised.listeners", ""))
    assert advertised, "clients need an advertised listener"
    assert {protocols[name] for name in advertised} == {"SASL_SSL"}
    assert props["sasl.enabled.mechanisms"] == "SCRAM-SHA-512"
    assert props["sasl.mechanism.inter.broker.protocol"] == "SCRAM-SHA-512"
    assert protocols[props["inter.broker.listener.name"]] == "SASL_SSL"
    for name, address in listeners.items():
        host = address.rsplit(":", 1)[0]
        if protocols[name] != "SASL_SSL":
            # Anything else (the KRaft controller) must not be reachable outside the pod.
            assert host in LOOPBACK, f"{name} ({protocols[name]}) listens on {address!r}"
            assert protocols[name] != "PLAINTEXT", f"{name} is unauthenticated"
    controllers = props["controller.listener.names"].split(",")
    assert all(listeners[name].rsplit(":", 1)[0] in LOOPBACK for name in controllers)
    # The image's entrypoint demands JKS passwords (forbidden with PEM) when an advertised
    # listener's text contains "SSL://", and a JAAS file when it contains "SASL_".
    assert "SSL://" not in props["advertised.listeners"]
    assert "SASL_" not in props["advertised.listeners"]


def test_broker_tls_uses_pem_files_from_a_mounted_secret() -> None:
    for where, props in (("compose", _compose_broker()), ("k8s", _k8s_broker())):
        assert props["ssl.keystore.type"] == "PEM", where
        assert props["ssl.truststore.type"] == "PEM", where
        assert "ssl.keystore.password" not in props, "a PEM key store takes no password"
    compose_mounts = [v.rsplit(":", 2)[1] for v in _compose()["services"]["kafka"]["volumes"]]
    assert str(Path(_compose_broker()["ssl.keystore.location"]).parent) in compose_mounts
    template = _pod_templates()["respublica-kafka"]["spec"]
    mounts = {m["mountPath"]: m["name"] for m in template["containers"][0]["volumeMounts"]}
    volume = mounts[str(Path(_k8s_broker()["ssl.keystore.location"]).parent)]
    (source,) = [v for v in template["volumes"] if v["name"] == volume]
    assert source["secret"]["secretName"] == "respublica-kafka-tls"


def test_broker_logins_and_users_come_from_secrets() -> None:
    compose = _compose()["services"]["kafka"]
    assert "SASL_JAAS" not in yaml.safe_dump(compose["environment"]).upper()
    assert compose["env_file"] == [
        "${RESPUBLICA_SECRETS_DIR:?run deploy/make_secrets.py and set it in the env file}/kafka.env"
    ]
    (container,) = _pod_templates()["respublica-kafka"]["spec"]["containers"]
    assert container["envFrom"] == [{"secretRef": {"name": "respublica-kafka-broker"}}]
    assert not any("JAAS" in e["name"] for e in container["env"])


def test_kafka_start_script_is_valid_bash_and_used_by_both() -> None:
    bash = shutil.which("bash")
    if bash is None:
        pytest.skip("bash not installed")
    subprocess.run([bash, "-n", str(K8S / "kafka-start.sh")], check=True, timeout=30)
    compose = _compose()["services"]["kafka"]
    assert "./k8s/kafka-start.sh:/etc/respublica/kafka-start.sh:ro" in compose["volumes"]
    assert compose["command"] == ["bash", "/etc/respublica/kafka-start.sh"]
    (container,) = _pod_templates()["respublica-kafka"]["spec"]["containers"]
    assert container["command"] == ["bash", "/etc/respublica/kafka-start/kafka-start.sh"]


# ------------------------------------------------------------------ one principal per role


def _expected_principals() -> dict[str, str]:
    """Workload -> the principal it must log in as (docs/security.md, "Principals")."""
    return {
        "respublica-apply": ADMIN_PRINCIPAL,
        "respublica-gateway": INGEST_PRINCIPAL,
        "respublica-validator": INGEST_PRINCIPAL,
        "respublica-audit": AUDITOR_PRINCIPAL,
        **{f"respublica-worker-{c}": worker_principal(c) for c in CONTRACT_IDS},
    }


def _secret_users() -> dict[str, str]:
    return {
        s["metadata"]["name"]: "User:" + s["stringData"]["RESPUBLICA_KAFKA_USERNAME"]
        for s in _objects("Secret")
        if "RESPUBLICA_KAFKA_USERNAME" in s["stringData"]
    }


def test_each_k8s_workload_logs_in_as_its_own_principal_from_its_own_secret() -> None:
    users = _secret_users()
    found = {}
    for name, template in _pod_templates().items():
        if name == "respublica-kafka":
            continue
        (container,) = template["spec"]["containers"]
        refs = [s["secretRef"]["name"] for s in container.get("envFrom", []) if "secretRef" in s]
        assert len(refs) == 1, f"{name}: one Kafka credentials Secret"
        found[name] = users[refs[0]]
    assert found == _expected_principals()
    # A Secret holds one principal, and the admin's goes to the apply Job alone.
    assert len(set(users.values())) == len(users)


def test_each_compose_service_logs_in_as_its_own_principal() -> None:
    services = _compose()["services"]
    stems = {
        name: Path(service["env_file"][0]).name.removesuffix(".env")
        for name, service in services.items()
        if name != "kafka" and service.get("env_file")
    }
    assert stems == {
        "apply": "admin",
        "gateway": "ingest",
        "validator": "ingest",
        "audit": "auditor",
        **{f"worker-{c}": f"worker.{c}" for c in CONTRACT_IDS},
    }
    base = services["gateway"]["environment"]
    assert base["RESPUBLICA_KAFKA_SECURITY_PROTOCOL"] == "SASL_SSL"
    assert base["RESPUBLICA_KAFKA_SASL_MECHANISM"] == "SCRAM-SHA-512"
    assert "RESPUBLICA_KAFKA_PASSWORD" not in yaml.safe_dump(_compose())


def test_k8s_clients_trust_the_ca_and_reach_the_broker_over_sasl_ssl() -> None:
    (settings,) = [
        c for c in _objects("ConfigMap") if c["metadata"]["name"] == "respublica-settings"
    ]
    data = settings["data"]
    assert data["RESPUBLICA_KAFKA_SECURITY_PROTOCOL"] == "SASL_SSL"
    assert data["RESPUBLICA_KAFKA_SASL_MECHANISM"] == "SCRAM-SHA-512"
    advertised = _listeners(_k8s_broker()["advertised.listeners"])
    assert data["RESPUBLICA_KAFKA_BOOTSTRAP"] in advertised.values()
    ca_dir = str(Path(data["RESPUBLICA_KAFKA_SSL_CAFILE"]).parent)
    for name, template in _pod_templates().items():
        if name == "respublica-kafka":
            continue
        mounts = {
            m["mountPath"]: m["name"] for m in template["spec"]["containers"][0]["volumeMounts"]
        }
        (volume,) = [v for v in template["spec"]["volumes"] if v["name"] == mounts[ca_dir]]
        # Only the CA certificate: the broker's key stays in the broker's pod.
        assert volume["secret"] == {
            "secretName": "respublica-kafka-ca",
            "items": [{"key": "ca.pem", "path": "ca.pem"}],
        }, name


def test_the_broker_formats_a_scram_user_for_every_service_principal() -> None:
    (users,) = [s for s in _objects("Secret") if s["metadata"]["name"] == "respublica-kafka-users"]
    principals = {"User:" + name for name in users["stringData"]}
    assert principals == set(_secret_users().values())
    assert principals >= set(_expected_principals().values())


# ------------------------------------------------------------------ network policies


def _policies() -> dict[str, dict[str, Any]]:
    return {p["metadata"]["name"]: p for p in _objects("NetworkPolicy")}


def _selects(selector: dict[str, Any], labels: dict[str, str]) -> bool:
    if not selector.get("matchLabels", {}).items() <= labels.items():
        return False
    for expression in selector.get("matchExpressions", []):
        assert expression["operator"] == "In"
        if labels.get(expression["key"]) not in expression["values"]:
            return False
    return True


def _rules(labels: dict[str, str], direction: str) -> list[dict[str, Any]]:
    return [
        rule
        for policy in _policies().values()
        if _selects(policy["spec"]["podSelector"], labels)
        and direction.capitalize() in policy["spec"]["policyTypes"]
        for rule in policy["spec"].get(direction, [])
    ]


def test_network_policies_deny_everything_by_default() -> None:
    defaults = [
        p
        for p in _policies().values()
        if p["spec"]["podSelector"] == {}
        and set(p["spec"]["policyTypes"]) == {"Ingress", "Egress"}
        and not p["spec"].get("ingress")
        and not p["spec"].get("egress")
    ]
    assert len(defaults) == 1
    kustomization = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    assert "networkpolicies.yaml" in kustomization["resources"]


def test_no_rule_opens_a_pod_to_everyone() -> None:
    assert _policies(), "no NetworkPolicy: every pod is open to every other"
    for name, policy in _policies().items():
        for direction, peers in (("ingress", "from"), ("egress", "to")):
            for rule in policy["spec"].get(direction, []):
                assert rule.get(peers), f"{name}: a {direction} rule without peers allows all"
                assert rule.get("ports"), f"{name}: a {direction} rule without ports allows all"


def _component(name: str) -> dict[str, str]:
    return {"app.kubernetes.io/name": "respublica", "app.kubernetes.io/component": name}


def _ingress_ports(component: str) -> set[Any]:
    return {p["port"] for r in _rules(_component(component), "ingress") for p in r["ports"]}


def _egress_ports(component: str) -> set[Any]:
    return {p["port"] for r in _rules(_component(component), "egress") for p in r["ports"]}


def test_each_role_is_opened_only_where_it_needs() -> None:
    assert _ingress_ports("gateway") == {"http", "metrics"}  # providers' side, Prometheus
    assert _ingress_ports("validator") == {"http", "metrics"}  # Prometheus (no http port)
    assert _ingress_ports("worker") == {"http", "metrics"}
    assert _ingress_ports("apply") == _ingress_ports("audit") == set()
    assert _ingress_ports("kafka") == {9092}
    for component in ("apply", "audit", "gateway", "validator", "worker", "kafka"):
        assert _egress_ports(component) == {53, 9092}, component
    # Providers reach the gateway from the ingress controller's namespace only.
    (gateway,) = _rules(_component("gateway"), "ingress")[:1]
    assert [list(peer) for peer in gateway["from"]] == [["namespaceSelector"]]


def test_analysts_reach_nothing_internal() -> None:
    analysts = {"respublica.io/kafka-access": "true"}
    for component in ("gateway", "validator", "worker", "apply", "audit"):
        for rule in _rules(_component(component), "ingress"):
            for peer in rule["from"]:
                namespaces = peer.get("namespaceSelector", {}).get("matchLabels", {})
                assert "respublica.io/kafka-access" not in namespaces, component
    # The broker's port, where SCRAM and the ACLs hold them to their public views, is the
    # only thing a labelled namespace may open.
    (kafka,) = _rules(_component("kafka"), "ingress")
    assert {"namespaceSelector": {"matchLabels": analysts}} in kafka["from"]


def test_every_pod_is_covered_by_a_policy() -> None:
    for name, template in _pod_templates().items():
        labels = template["metadata"]["labels"]
        assert _rules(labels, "egress"), f"{name}: no egress allowed at all (DNS, Kafka)"
        assert any(_selects(p["spec"]["podSelector"], labels) for p in _policies().values())


# ------------------------------------------------------------------ Grafana


def test_grafana_has_no_default_password_and_no_anonymous_access() -> None:
    grafana = _compose()["services"]["grafana"]
    env = {k: str(v) for k, v in grafana["environment"].items()}
    assert env["GF_AUTH_ANONYMOUS_ENABLED"] == "false"
    assert "GF_SECURITY_ADMIN_PASSWORD" not in env, "a password in the environment or a default"
    assert "GF_AUTH_ANONYMOUS_ORG_ROLE" not in env
    secret = env["GF_SECURITY_ADMIN_PASSWORD__FILE"].removeprefix("/run/secrets/")
    assert secret in grafana["secrets"]
    assert _compose()["secrets"][secret]["file"].startswith("${RESPUBLICA_SECRETS_DIR:?")
    assert ":-admin}" not in (DEPLOY / "docker-compose.yml").read_text(encoding="utf-8")


# ------------------------------------------------------------------ make_secrets.py


@pytest.fixture(scope="module")
def secrets_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("secrets") / "respublica"
    _load_make_secrets().generate(out)
    return out


def test_make_secrets_writes_what_compose_mounts(secrets_dir: Path) -> None:
    text = (DEPLOY / "docker-compose.yml").read_text(encoding="utf-8")
    for service in _compose()["services"].values():
        for env_file in service.get("env_file", []):
            assert (secrets_dir / env_file.split("}/", 1)[1]).is_file(), env_file
    for secret in _compose()["secrets"].values():
        assert (secrets_dir / secret["file"].split("}/", 1)[1]).is_file()
    assert "}/kafka:/etc/kafka/respublica:ro" in text and "}/kafka/ca.pem:" in text
    kafka = secrets_dir / "kafka"
    broker = _compose_broker()
    for prop in ("ssl.keystore.location", "ssl.truststore.location"):
        assert (kafka / Path(broker[prop]).name).is_file()
    users = {p.name for p in (kafka / "users").iterdir()}
    assert {"User:" + u for u in users} >= set(_expected_principals().values())
    assert stat.S_IMODE(secrets_dir.stat().st_mode) == 0o700
    assert stat.S_IMODE((secrets_dir / "admin.env").stat().st_mode) == 0o600
    assert stat.S_IMODE((secrets_dir / "ca.key").stat().st_mode) == 0o600


def test_make_secrets_certificate_names_every_advertised_host(secrets_dir: Path) -> None:
    pem = (secrets_dir / "kafka" / "broker.pem").read_bytes()
    cert = x509.load_pem_x509_certificates(pem)[0]
    names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    dns = set(names.get_values_for_type(x509.DNSName))
    ips = {str(ip) for ip in names.get_values_for_type(x509.IPAddress)}
    for props in (_compose_broker(), _k8s_broker()):
        for address in _listeners(props["advertised.listeners"]).values():
            host = address.rsplit(":", 1)[0]
            try:
                assert str(ipaddress.ip_address(host)) in ips
            except ValueError:
                assert host in dns


def test_make_secrets_k8s_secrets_match_the_templates(secrets_dir: Path) -> None:
    made = {s["metadata"]["name"]: s for s in _docs(secrets_dir / "k8s-secrets.yaml")}
    templates = {
        s["metadata"]["name"]: s
        for name in ("secret-kafka.yaml", "secret-gateway-tokens.yaml")
        for s in _docs(K8S / name)
    }
    assert {n: set(s["stringData"]) for n, s in made.items()} == {
        n: set(s["stringData"]) for n, s in templates.items()
    }
    passwords = made["respublica-kafka-users"]["stringData"]
    for name, secret in made.items():
        data = secret["stringData"]
        if "RESPUBLICA_KAFKA_USERNAME" in data:
            assert data["RESPUBLICA_KAFKA_PASSWORD"] == passwords[data["RESPUBLICA_KAFKA_USERNAME"]]
            assert (
                data["RESPUBLICA_KAFKA_USERNAME"]
                == templates[name]["stringData"]["RESPUBLICA_KAFKA_USERNAME"]
            )
    for password in passwords.values():
        assert len(password) >= 32
        assert all(c.isalnum() or c in "-_" for c in password), "safe in --add-scram and JAAS"
    admin = passwords["admin"]
    assert all(admin in v for v in made["respublica-kafka-broker"]["stringData"].values())


def test_make_secrets_gateway_tokens_match_the_providers(secrets_dir: Path) -> None:
    grants = load_tokens(secrets_dir / "gateway-tokens.yaml")
    assert {g.id for g in grants} == {"scootco", "routely", "staybnb"}
    for grant in grants:
        token = (secrets_dir / "provider-tokens" / grant.id).read_text(encoding="utf-8")
        assert hashlib.sha256(token.encode()).hexdigest() == grant.token_sha256


def test_make_secrets_refuses_a_folder_that_holds_files(tmp_path: Path) -> None:
    module = _load_make_secrets()
    (tmp_path / "old").write_text("x", encoding="utf-8")
    with pytest.raises(module.SecretsError, match="already holds files"):
        module.generate(tmp_path)
    assert module.main([str(REPO / "out" / "secrets")]) == 1, "never inside the repository"
