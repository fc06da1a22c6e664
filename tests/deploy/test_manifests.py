"""Kubernetes manifests, the contracts ConfigMap and the Dockerfile, checked without kubectl.

Every YAML file under deploy/ parses; every object has a known kind and passes a structural
schema; workloads are hardened and probed; selectors, ports, ConfigMaps and Secrets refer to
things that exist; the kustomization lists exactly the manifests; the contracts ConfigMap is
the current rendering of contracts/ and the pods lay it out so the contracts load.
"""

from __future__ import annotations

import functools
import importlib.util
import shutil
import subprocess
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import yaml

from contracts import load_contracts
from tests.deploy.schema import Schema, violations

pytestmark = pytest.mark.unit

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy"
K8S = DEPLOY / "k8s"
SECRET_TEMPLATE = "secret-master-key.yaml"  # noqa: S105 (a file name)
# Secret templates: placeholders only, never listed in the kustomization.
SECRET_TEMPLATES = frozenset({SECRET_TEMPLATE, "secret-kafka.yaml", "secret-gateway-tokens.yaml"})
PLACEHOLDER = "REPLACE_ME_WITH_OPENSSL_RAND_BASE64_32"
KAFKA_IMAGE = "apache/kafka:"
NOW = datetime(2026, 6, 1, tzinfo=UTC)
ALL_INTERFACES = "0.0.0.0"  # noqa: S104 (containers must listen on their network interface)


def _render_module() -> ModuleType:
    spec = importlib.util.spec_from_file_location("render_configmap", K8S / "render_configmap.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


render = _render_module()


def _yaml_files() -> list[Path]:
    return sorted(p for p in DEPLOY.rglob("*") if p.suffix in (".yaml", ".yml"))


def _docs(path: Path) -> list[Any]:
    return [doc for doc in yaml.safe_load_all(path.read_text(encoding="utf-8")) if doc is not None]


@functools.cache
def _manifests() -> list[tuple[str, dict[str, Any]]]:
    """Every object in deploy/k8s, parsed once (tests must not mutate them)."""
    return [(p.name, doc) for p in sorted(K8S.glob("*.yaml")) for doc in _docs(p)]


def _objects(kind: str) -> list[dict[str, Any]]:
    return [doc for _, doc in _manifests() if doc.get("kind") == kind]


def _pod_templates() -> Iterator[tuple[str, dict[str, Any]]]:
    """The pod templates running the respublica image (the Kafka StatefulSet is apart)."""
    for kind in ("Deployment", "Job"):
        for obj in _objects(kind):
            yield obj["metadata"]["name"], obj["spec"]["template"]
    for obj in _objects("CronJob"):
        yield obj["metadata"]["name"], obj["spec"]["jobTemplate"]["spec"]["template"]


def _generated_configmaps() -> set[str]:
    (kustomization,) = _docs(K8S / "kustomization.yaml")
    return {g["name"] for g in kustomization.get("configMapGenerator", [])}


def _ids(pairs: list[tuple[str, dict[str, Any]]]) -> list[str]:
    return [f"{name}:{doc.get('kind')}" for name, doc in pairs]


# ------------------------------------------------------------------ schemas

NAME = {"type": "string", "pattern": r"[a-z0-9]([-a-z0-9]*[a-z0-9])?"}
LABELS = {"type": "object", "additionalProperties": {"type": "string"}}
METADATA = {
    "type": "object",
    "required": ["name", "namespace", "labels"],
    "properties": {"name": NAME, "namespace": {"const": "respublica"}, "labels": LABELS},
}


def _probe(path: str) -> Schema:
    return {
        "type": "object",
        "required": ["httpGet"],
        "properties": {
            "httpGet": {
                "type": "object",
                "required": ["path", "port"],
                "properties": {"path": {"const": path}},
            }
        },
    }


# Readiness says degraded during a broker outage; liveness must not restart a process that
# waits one out (docs/reliability.md).
PROBE = _probe("/healthz")
LIVENESS_PROBE = _probe("/livez")
QUANTITIES = {"type": "object", "required": ["cpu", "memory"]}
CONTAINER: Schema = {
    "type": "object",
    "required": ["name", "image", "args", "resources", "securityContext", "volumeMounts"],
    "properties": {
        "name": NAME,
        "image": {"type": "string", "pattern": r"respublica:[\w.-]+"},
        "args": {"type": "array", "minItems": 1, "items": {"type": "string"}},
        "resources": {
            "type": "object",
            "required": ["requests", "limits"],
            "properties": {"requests": QUANTITIES, "limits": QUANTITIES},
        },
        "securityContext": {
            "type": "object",
            "required": ["allowPrivilegeEscalation", "readOnlyRootFilesystem", "capabilities"],
            "properties": {
                "allowPrivilegeEscalation": {"const": False},
                "readOnlyRootFilesystem": {"const": True},
                "capabilities": {
                    "type": "object",
                    "required": ["drop"],
                    "properties": {"drop": {"const": ["ALL"]}},
                },
            },
        },
    },
}
LONG_RUNNING_CONTAINER: Schema = {
    **CONTAINER,
    "required": [*CONTAINER["required"], "ports", "readinessProbe", "livenessProbe"],
    "properties": {
        **CONTAINER["properties"],
        "readinessProbe": PROBE,
        "livenessProbe": LIVENESS_PROBE,
        "startupProbe": PROBE,
    },
}


KAFKA_CONTAINER: Schema = {
    **CONTAINER,
    "required": ["name", "image", "command", "resources", "securityContext", "volumeMounts"],
    "properties": {
        **CONTAINER["properties"],
        "image": {"type": "string", "pattern": r"apache/kafka:[\w.-]+"},
        "securityContext": {
            **CONTAINER["properties"]["securityContext"],
            "required": ["allowPrivilegeEscalation", "capabilities"],
            # The image renders its configuration under /opt/kafka/config at start.
            "properties": {
                **CONTAINER["properties"]["securityContext"]["properties"],
                "readOnlyRootFilesystem": {"type": "boolean"},
            },
        },
    },
}


def _pod_spec(container: Schema, **extra: Schema) -> Schema:
    return {
        "type": "object",
        "required": ["securityContext", "containers", "volumes"],
        "properties": {
            "automountServiceAccountToken": {"const": False},
            "securityContext": {
                "type": "object",
                "required": ["runAsNonRoot", "runAsUser", "seccompProfile"],
                "properties": {
                    "runAsNonRoot": {"const": True},
                    "runAsUser": {"type": "integer", "minimum": 1},
                    "seccompProfile": {"const": {"type": "RuntimeDefault"}},
                },
            },
            "containers": {"type": "array", "minItems": 1, "items": container},
            **extra,
        },
    }


def _workload(spec: Schema) -> Schema:
    return {
        "type": "object",
        "required": ["metadata", "spec"],
        "properties": {"metadata": METADATA, "spec": spec},
    }


SCHEMAS: dict[str, Schema] = {
    "Namespace": {
        "type": "object",
        "required": ["metadata"],
        "properties": {
            "metadata": {
                "type": "object",
                "required": ["name"],
                "properties": {"name": {"const": "respublica"}},
            }
        },
    },
    "ConfigMap": {
        "type": "object",
        "required": ["metadata", "data"],
        "properties": {
            "metadata": METADATA,
            "data": {"type": "object", "additionalProperties": {"type": "string"}},
        },
    },
    "Secret": {
        "type": "object",
        "required": ["metadata", "stringData"],
        "properties": {"metadata": METADATA, "type": {"const": "Opaque"}},
    },
    "Service": {
        "type": "object",
        "required": ["metadata", "spec"],
        "properties": {
            "metadata": METADATA,
            "spec": {
                "type": "object",
                "required": ["selector", "ports"],
                "properties": {
                    "ports": {
                        "type": "array",
                        "minItems": 1,
                        "items": {"type": "object", "required": ["name", "port", "targetPort"]},
                    }
                },
            },
        },
    },
    "Deployment": _workload(
        {
            "type": "object",
            "required": ["replicas", "selector", "template"],
            "properties": {
                "replicas": {"type": "integer", "minimum": 1},
                "selector": {"type": "object", "required": ["matchLabels"]},
                "template": {
                    "type": "object",
                    "required": ["metadata", "spec"],
                    "properties": {"spec": _pod_spec(LONG_RUNNING_CONTAINER)},
                },
            },
        }
    ),
    "Job": _workload(
        {
            "type": "object",
            "required": ["backoffLimit", "template"],
            "properties": {
                "template": {
                    "type": "object",
                    "required": ["metadata", "spec"],
                    "properties": {
                        "spec": _pod_spec(CONTAINER, restartPolicy={"enum": ["Never", "OnFailure"]})
                    },
                }
            },
        }
    ),
    "CronJob": _workload(
        {
            "type": "object",
            "required": ["schedule", "jobTemplate"],
            "properties": {
                "jobTemplate": {
                    "type": "object",
                    "required": ["spec"],
                    "properties": {
                        "spec": {
                            "type": "object",
                            "required": ["template"],
                            "properties": {
                                "template": {
                                    "type": "object",
                                    "required": ["metadata", "spec"],
                                    "properties": {
                                        "spec": _pod_spec(
                                            CONTAINER,
                                            restartPolicy={"enum": ["Never", "OnFailure"]},
                                        )
                                    },
                                }
                            },
                        }
                    },
                }
            },
        }
    ),
    "StatefulSet": _workload(
        {
            "type": "object",
            "required": ["serviceName", "replicas", "selector", "template"],
            "properties": {
                "template": {
                    "type": "object",
                    "required": ["metadata", "spec"],
                    "properties": {"spec": _pod_spec(KAFKA_CONTAINER)},
                }
            },
        }
    ),
    "NetworkPolicy": {
        "type": "object",
        "required": ["metadata", "spec"],
        "properties": {
            "metadata": METADATA,
            "spec": {
                "type": "object",
                "required": ["podSelector", "policyTypes"],
                "properties": {
                    "policyTypes": {
                        "type": "array",
                        "minItems": 1,
                        "items": {"enum": ["Ingress", "Egress"]},
                    }
                },
            },
        },
    },
    "Kustomization": {
        "type": "object",
        "required": ["resources"],
        "properties": {"resources": {"type": "array", "items": {"type": "string"}}},
    },
}
API_VERSIONS = {
    "Namespace": "v1",
    "ConfigMap": "v1",
    "Secret": "v1",
    "Service": "v1",
    "Deployment": "apps/v1",
    "Job": "batch/v1",
    "CronJob": "batch/v1",
    "StatefulSet": "apps/v1",
    "NetworkPolicy": "networking.k8s.io/v1",
    "Kustomization": "kustomize.config.k8s.io/v1beta1",
}


# ------------------------------------------------------------------ every file parses


@pytest.mark.parametrize("path", _yaml_files(), ids=lambda p: str(p.relative_to(DEPLOY)))
def test_every_yaml_file_under_deploy_parses(path: Path) -> None:
    assert _docs(path), f"{path} holds no YAML document"


@pytest.mark.parametrize(("name", "doc"), _manifests(), ids=_ids(_manifests()))
def test_manifest_has_identity_and_known_kind(name: str, doc: dict[str, Any]) -> None:
    assert doc.get("kind") in API_VERSIONS, f"{name}: unknown kind {doc.get('kind')!r}"
    assert doc.get("apiVersion") == API_VERSIONS[doc["kind"]], name
    if doc["kind"] != "Kustomization":
        assert doc.get("metadata", {}).get("name"), f"{name}: no metadata.name"


@pytest.mark.parametrize(("name", "doc"), _manifests(), ids=_ids(_manifests()))
def test_manifest_matches_its_schema(name: str, doc: dict[str, Any]) -> None:
    assert violations(doc, SCHEMAS[doc["kind"]]) == []


def test_schema_check_catches_an_unhardened_deployment() -> None:
    deployment = _objects("Deployment")[0]
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    broken = {
        **deployment,
        "spec": {
            **deployment["spec"],
            "template": {
                "metadata": {},
                "spec": {
                    **deployment["spec"]["template"]["spec"],
                    "containers": [
                        {
                            **container,
                            "securityContext": {
                                **container["securityContext"],
                                "readOnlyRootFilesystem": False,
                            },
                            "readinessProbe": None,
                        }
                    ],
                },
            },
        },
    }
    found = violations(broken, SCHEMAS["Deployment"])
    assert any("readOnlyRootFilesystem: must be True" in v for v in found)
    assert any("readinessProbe: expected object" in v for v in found)


# ------------------------------------------------------------------ workloads


@pytest.mark.parametrize("deployment", _objects("Deployment"), ids=lambda d: d["metadata"]["name"])
def test_deployment_selector_matches_its_template_labels(deployment: dict[str, Any]) -> None:
    selector = deployment["spec"]["selector"]["matchLabels"]
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert selector and selector.items() <= labels.items()


@pytest.mark.parametrize("deployment", _objects("Deployment"), ids=lambda d: d["metadata"]["name"])
def test_probes_and_scrape_annotations_use_declared_ports(deployment: dict[str, Any]) -> None:
    template = deployment["spec"]["template"]
    container = template["spec"]["containers"][0]
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        if probe in container:
            assert container[probe]["httpGet"]["port"] in ports, probe
    annotations = template["metadata"]["annotations"]
    assert annotations["prometheus.io/scrape"] == "true"
    assert annotations["prometheus.io/path"] == "/metrics"
    assert int(annotations["prometheus.io/port"]) in ports.values()


WORKER_CONTRACTS = {
    "lyon-micromobility": "micromobility.yaml",
    "bordeaux-navigation": "navigation.yaml",
    "paris-str": "rentals.yaml",
}


def _workers() -> dict[str, dict[str, Any]]:
    return {
        d["metadata"]["name"].removeprefix("respublica-worker-"): d
        for d in _objects("Deployment")
        if d["metadata"]["name"].startswith("respublica-worker-")
    }


def test_one_worker_per_contract_with_health_on_6066_and_the_master_key() -> None:
    workers = _workers()
    assert set(workers) == set(WORKER_CONTRACTS)
    for contract_id, worker in workers.items():
        assert worker["spec"]["replicas"] == 2
        container = worker["spec"]["template"]["spec"]["containers"][0]
        path = f"{render.MOUNT_PATH}/examples/{WORKER_CONTRACTS[contract_id]}"
        assert container["args"] == [
            "worker",
            "--contracts",
            path,
            "--web-host",
            ALL_INTERFACES,
            "--web-port",
            "6066",
        ]
        assert {p["name"]: p["containerPort"] for p in container["ports"]} == {"metrics": 6066}
        env = {e["name"]: e for e in container["env"]}
        ref = env["RESPUBLICA_MASTER_KEY"]["valueFrom"]["secretKeyRef"]
        assert ref == {"name": "respublica-master-key", "key": "RESPUBLICA_MASTER_KEY"}
    selectors = [
        tuple(sorted(w["spec"]["selector"]["matchLabels"].items())) for w in workers.values()
    ]
    assert len(set(selectors)) == len(selectors), "each Deployment selects its own pods"


def test_worker_contract_files_hold_the_contract_they_are_named_after() -> None:
    for contract_id, filename in WORKER_CONTRACTS.items():
        doc = yaml.safe_load((REPO / "contracts/examples" / filename).read_text(encoding="utf-8"))
        assert doc["id"] == contract_id


def test_each_component_runs_its_subcommand() -> None:
    args = {name: template["spec"]["containers"][0]["args"] for name, template in _pod_templates()}
    assert {name: command[0] for name, command in args.items()} == {
        "respublica-apply": "apply",
        "respublica-audit": "audit",
        "respublica-gateway": "gateway",
        "respublica-validator": "validator",
        **{f"respublica-worker-{c}": "worker" for c in WORKER_CONTRACTS},
    }
    # The validator serves no metrics unless asked to, on 127.0.0.1 unless told otherwise;
    # Prometheus and the probes need them from outside the pod.
    assert args["respublica-validator"][1:] == [
        "--metrics-host",
        "0.0.0.0",  # noqa: S104 - inside a pod, behind a NetworkPolicy
        "--metrics-port",
        "6066",
    ]
    # The gateway listens on the pod's interface (default 127.0.0.1) with its tokens file.
    gateway = args["respublica-gateway"]
    assert gateway[gateway.index("--host") + 1] == ALL_INTERFACES
    assert gateway[gateway.index("--tokens") + 1] == "/etc/respublica/gateway/tokens.yaml"


@pytest.mark.parametrize("service", _objects("Service"), ids=lambda s: s["metadata"]["name"])
def test_service_selects_a_deployment_and_its_named_port(service: dict[str, Any]) -> None:
    selector = service["spec"]["selector"].items()
    matching = [
        d
        for kind in ("Deployment", "StatefulSet")
        for d in _objects(kind)
        if selector <= d["spec"]["template"]["metadata"]["labels"].items()
    ]
    assert matching, "a Service must select some workload's pods"
    assert len({d["metadata"]["labels"]["app.kubernetes.io/component"] for d in matching}) == 1
    for workload in matching:
        container = workload["spec"]["template"]["spec"]["containers"][0]
        names = {p["name"] for p in container["ports"]}
        assert {p["targetPort"] for p in service["spec"]["ports"]} <= names


def _all_pod_templates() -> Iterator[tuple[str, dict[str, Any]]]:
    yield from _pod_templates()
    for obj in _objects("StatefulSet"):
        yield obj["metadata"]["name"], obj["spec"]["template"]


def test_pods_refer_to_configmaps_and_secrets_that_exist() -> None:
    configmaps = {c["metadata"]["name"] for c in _objects("ConfigMap")} | _generated_configmaps()
    secrets = {s["metadata"]["name"]: s for s in _objects("Secret")}
    for name, template in _all_pod_templates():
        spec = template["spec"]
        for container in spec["containers"]:
            for source in container.get("envFrom", []):
                if "configMapRef" in source:
                    assert source["configMapRef"]["name"] in configmaps, name
                else:
                    assert source["secretRef"]["name"] in secrets, name
            for var in container.get("env", []):
                ref = var.get("valueFrom", {}).get("secretKeyRef")
                if ref:
                    assert ref["key"] in secrets[ref["name"]]["stringData"], name
        for volume in spec["volumes"]:
            if "configMap" in volume:
                assert volume["configMap"]["name"] in configmaps, name
            if "secret" in volume:
                secret = secrets[volume["secret"]["secretName"]]
                for item in volume["secret"].get("items", []):
                    assert item["key"] in secret["stringData"], name


# ------------------------------------------------------------------ kustomization and secret


def test_kustomization_lists_every_manifest_but_the_secret_template() -> None:
    (kustomization,) = _docs(K8S / "kustomization.yaml")
    listed = kustomization["resources"]
    assert len(listed) == len(set(listed))
    missing = [name for name in listed if not (K8S / name).is_file()]
    assert missing == []
    on_disk = {p.name for p in K8S.glob("*.yaml")} - {"kustomization.yaml", *SECRET_TEMPLATES}
    assert set(listed) == on_disk
    assert {p.name for p in K8S.glob("secret-*.yaml")} == SECRET_TEMPLATES
    assert kustomization["namespace"] == "respublica"
    for generator in kustomization["configMapGenerator"]:
        assert all((K8S / f).is_file() for f in generator["files"]), generator["name"]


def test_secret_template_holds_only_the_placeholder() -> None:
    (secret,) = _docs(K8S / SECRET_TEMPLATE)
    assert secret["stringData"] == {"RESPUBLICA_MASTER_KEY": PLACEHOLDER}
    assert "TEMPLATE ONLY" in (K8S / SECRET_TEMPLATE).read_text(encoding="utf-8")


@pytest.mark.parametrize("template", sorted(SECRET_TEMPLATES))
def test_every_secret_template_holds_placeholders_only(template: str) -> None:
    assert "TEMPLATE ONLY" in (K8S / template).read_text(encoding="utf-8")
    for secret in _docs(K8S / template):
        for key, value in secret["stringData"].items():
            if key != "RESPUBLICA_KAFKA_USERNAME":  # a user name is not a secret
                assert "REPLACE_ME" in value, f"{template}: {key} is not a placeholder"


@pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl not installed")
def test_kustomize_builds_every_listed_object() -> None:
    built = subprocess.run(
        ["kubectl", "kustomize", str(K8S)], capture_output=True, text=True, check=True, timeout=60
    ).stdout
    kinds = sorted(doc["kind"] for doc in yaml.safe_load_all(built) if doc)
    expected = sorted(
        doc["kind"]
        for name, doc in _manifests()
        if doc["kind"] != "Kustomization" and name not in SECRET_TEMPLATES
    )
    expected = sorted([*expected, *("ConfigMap" for _ in _generated_configmaps())])
    assert kinds == expected


# ------------------------------------------------------------------ contracts ConfigMap


def test_contracts_configmap_is_up_to_date() -> None:
    current = (K8S / "configmap-contracts.yaml").read_text(encoding="utf-8")
    assert current == render.render(render.collect()), (
        "contracts changed: run python deploy/k8s/render_configmap.py"
    )


def test_configmap_holds_every_contract_schema_and_zone_file() -> None:
    (configmap,) = _docs(K8S / "configmap-contracts.yaml")
    expected = {
        render.key_for(f"examples/{p.relative_to(REPO / 'contracts/examples')}")
        for p in (REPO / "contracts/examples").rglob("*")
        if p.is_file()
    }
    expected |= {f"schemas--{p.name}" for p in (REPO / "contracts/schemas").glob("*.avsc")}
    assert set(configmap["data"]) == expected
    assert configmap["data"]["examples--rentals.yaml"] == (
        REPO / "contracts/examples/rentals.yaml"
    ).read_text(encoding="utf-8")


def test_render_check_mode_flags_a_stale_file(tmp_path: Path) -> None:
    stale = tmp_path / "configmap.yaml"
    stale.write_text("data: {}\n", encoding="utf-8")
    assert render.main(["--check", "--output", str(stale)]) == 1
    assert render.main(["--output", str(stale)]) == 0
    assert render.main(["--check", "--output", str(stale)]) == 0


def test_render_refuses_keys_that_collide() -> None:
    with pytest.raises(render.RenderError, match="same ConfigMap key"):
        render.items({"examples/a/b.yaml": "", "examples--a/b.yaml": ""})


@pytest.mark.parametrize(
    ("name", "template"), list(_pod_templates()), ids=[n for n, _ in _pod_templates()]
)
def test_pods_mount_the_contracts_at_their_relative_paths(
    name: str, template: dict[str, Any]
) -> None:
    spec = template["spec"]
    (volume,) = [v for v in spec["volumes"] if v["name"] == "contracts"]
    assert volume["configMap"]["name"] == render.CONFIGMAP_NAME
    assert volume["configMap"]["items"] == render.items(render.collect()), (
        "volume items are stale: python deploy/k8s/render_configmap.py --items"
    )
    mounts = {m["name"]: m for m in spec["containers"][0]["volumeMounts"]}
    assert mounts["contracts"]["mountPath"] == render.MOUNT_PATH
    assert mounts["contracts"]["readOnly"] is True


def test_contracts_load_from_the_layout_the_pods_see(tmp_path: Path) -> None:
    (configmap,) = _docs(K8S / "configmap-contracts.yaml")
    (settings,) = [
        c for c in _objects("ConfigMap") if c["metadata"]["name"] != render.CONFIGMAP_NAME
    ]
    for item in render.items(render.collect()):
        target = tmp_path / item["path"]
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(configmap["data"][item["key"]], encoding="utf-8")
    contracts_dir = Path(settings["data"]["RESPUBLICA_CONTRACTS"])
    local = tmp_path / contracts_dir.relative_to(render.MOUNT_PATH)
    loaded = load_contracts([local], now=NOW)
    assert sorted(c.id for c in loaded) == [
        "bordeaux-navigation",
        "lyon-micromobility",
        "paris-str",
    ]


# ------------------------------------------------------------------ image


def test_dockerfile_builds_a_small_non_root_image_with_the_cli_entrypoint() -> None:
    lines = [line.strip() for line in (DEPLOY / "Dockerfile").read_text().splitlines()]
    froms = [line for line in lines if line.startswith("FROM ")]
    assert froms and all(line.split()[1] == "python:3.11-slim" for line in froms)
    assert 'ENTRYPOINT ["respublica"]' in lines
    (user,) = [line for line in lines if line.startswith("USER ")]
    uid = user.split()[1].split(":")[0]
    assert uid.isdigit() and int(uid) > 0, "run as a numeric non-root uid (runAsNonRoot)"
    (workdir,) = [line for line in lines[lines.index(froms[-1]) :] if line.startswith("WORKDIR ")]
    for _, template in _pod_templates():
        mounts = {m["mountPath"] for m in template["spec"]["containers"][0]["volumeMounts"]}
        assert workdir.split()[1] in mounts, "the working directory must be writable"
        assert template["spec"]["securityContext"]["runAsUser"] == int(uid)
