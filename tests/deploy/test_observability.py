"""docker-compose, Prometheus and the Grafana auditor dashboard, checked without Docker.

The compose stack refers to files that exist, reaches Kafka through an advertised listener,
and never carries a key; Prometheus scrapes every component on the ports they declare; the
dashboard's panels all query Prometheus, and only with the metric names and labels the
components export (BRIEF §4: names start with ``respublica_``), so a renamed metric fails here.
"""

from __future__ import annotations

import functools
import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client.metrics import MetricWrapperBase

from broker.metrics import METRIC_NAMES, build_metrics
from tests.metric_catalogue import PROCESSES, catalogue

pytestmark = pytest.mark.unit

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy"
DASHBOARD = DEPLOY / "grafana" / "dashboards" / "respublica-auditor.json"
# One policy worker per example contract: (service, contract id, contract file).
WORKERS = (
    ("worker-lyon-micromobility", "lyon-micromobility", "micromobility.yaml"),
    ("worker-bordeaux-navigation", "bordeaux-navigation", "navigation.yaml"),
    ("worker-paris-str", "paris-str", "rentals.yaml"),
)
WORKER_SERVICES = tuple(service for service, _, _ in WORKERS)
APP_SERVICES = ("apply", "gateway", "validator", *WORKER_SERVICES)
ON_DEMAND_SERVICES = ("audit",)  # respublica sub-commands run by hand (own profile)
ALL_INTERFACES = "0.0.0.0"  # noqa: S104 (containers must listen on their network interface)

# The compliance metrics the dashboard may use: exported name -> label names (histograms add
# ``le``). The same as docs/metrics.md; a test checks them against broker/metrics.py.
METRICS: dict[str, frozenset[str]] = {
    name: frozenset(labels.split())
    for name, labels in {
        "respublica_events_ingested_total": "contract stream source",
        "respublica_events_rejected_total": "contract stream reason",
        "respublica_events_late_total": "contract view",
        "respublica_events_folded_total": "contract view",
        "respublica_records_published_total": "contract view",
        "respublica_groups_published_total": "contract view",
        "respublica_groups_suppressed_total": "contract view",
        "respublica_windows_released_total": "contract view",
        "respublica_epsilon_spent": "contract view period",
        "respublica_epsilon_budget": "contract view",
        "respublica_window_release_delay_seconds": "contract view",
        "respublica_end_to_end_latency_seconds": "contract view",
        "respublica_contract_info": "contract provider beneficiary version policy_hash legal_basis",
        "respublica_contract_days_to_expiry": "contract",
        "respublica_pseudonym_key_epoch_age_seconds": "contract",
        "respublica_keys_destroyed_total": "contract",
        "respublica_gbfs_id_rotation_violations_total": "contract source",
        "respublica_consumer_lag": "contract topic",
    }.items()
}
HISTOGRAMS = frozenset(
    {"respublica_window_release_delay_seconds", "respublica_end_to_end_latency_seconds"}
)
METRIC_NAME = re.compile(r"\brespublica_[a-z0-9_]+")
SELECTOR = re.compile(r"\b(respublica_[a-z0-9_]+)\{([^}]*)\}")
MATCHER = re.compile(r"([A-Za-z_][A-Za-z0-9_]*)\s*(?:=~|!~|!=|=)")
GROUPING = re.compile(r"\b(?:by|on|ignoring|without)\s*\(([^)]*)\)")


@functools.cache
def _compose() -> dict[str, Any]:
    return yaml.safe_load((DEPLOY / "docker-compose.yml").read_text(encoding="utf-8"))


def _service(name: str) -> dict[str, Any]:
    service: dict[str, Any] = _compose()["services"][name]
    return service


@functools.cache
def _dashboard() -> dict[str, Any]:
    dashboard: dict[str, Any] = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    return dashboard


def _panels() -> list[dict[str, Any]]:
    return [p for p in _dashboard()["panels"] if p["type"] != "row"]


def _exprs() -> list[str]:
    exprs = [t["expr"] for p in _panels() for t in p["targets"]]
    return exprs + [
        v["definition"] for v in _dashboard()["templating"]["list"] if v["type"] == "query"
    ]


def _metric(name: str) -> str:
    """The exported metric a series name belongs to (a histogram's _bucket/_sum/_count)."""
    for suffix in ("_bucket", "_sum", "_count"):
        base = name.removesuffix(suffix)
        if base != name and base in HISTOGRAMS:
            return base
    return name


def _environment(name: str) -> dict[str, str]:
    env = _service(name).get("environment", {})
    return {k: str(v) for k, v in env.items()}


def _host_path(spec: str) -> Path | None:
    source = spec.split(":")[0]
    return (DEPLOY / source).resolve() if source.startswith(".") else None


# ------------------------------------------------------------------ docker-compose


def test_compose_defines_the_whole_stack_behind_a_profile() -> None:
    services = _compose()["services"]
    assert set(services) == {"kafka", *APP_SERVICES, *ON_DEMAND_SERVICES, "prometheus", "grafana"}
    # `docker compose up -d` alone still starts only Kafka, as the README says.
    assert "profiles" not in services["kafka"]
    assert all(services[name]["profiles"] == ["audit"] for name in ON_DEMAND_SERVICES)
    assert all(
        services[name]["profiles"] == ["stack"]
        for name in services
        if name not in ("kafka", *ON_DEMAND_SERVICES)
    )


def test_compose_app_services_run_the_respublica_image_and_subcommand() -> None:
    for name in (*APP_SERVICES, *ON_DEMAND_SERVICES):
        service = _service(name)
        assert service["image"].startswith("respublica:")
        command = service.get("entrypoint", ["respublica", *service["command"]])[1:]
        assert command[0] == name.split("-")[0]
        assert service["read_only"] is True and service["cap_drop"] == ["ALL"]
    assert _service("apply")["restart"] == "no"
    for name in ("gateway", "validator", *WORKER_SERVICES):
        condition = _service(name)["depends_on"]["apply"]["condition"]
        assert condition == "service_completed_successfully"
    assert _service("validator")["command"][1:] == [
        "--metrics-host",
        "0.0.0.0",  # noqa: S104 - inside a pod, behind a NetworkPolicy
        "--metrics-port",
        "6066",
    ]
    for worker, contract_id, filename in WORKERS:
        # One contract, its own principal and so its own groups (respublica.<c>.raw, .merge:
        # the default); Prometheus in another container reaches the web server.
        assert _service(worker)["command"][1:] == [
            "--contracts",
            f"/etc/respublica/contracts/examples/{filename}",
            "--web-host",
            ALL_INTERFACES,
            "--web-port",
            "6066",
        ]
        assert [Path(e).name for e in _service(worker)["env_file"]] == [f"worker.{contract_id}.env"]
    assert "127.0.0.1:8080:8080" in _service("gateway")["ports"]


def test_compose_references_only_existing_files() -> None:
    for name, service in _compose()["services"].items():
        build = service.get("build")
        if build:
            context = (DEPLOY / build["context"]).resolve()
            assert (context / build["dockerfile"]).is_file(), name
        for volume in service.get("volumes", []):
            path = _host_path(volume)
            assert path is None or path.exists(), f"{name}: {volume}"
        for env_file in service.get("env_file", []):
            assert env_file.startswith("${RESPUBLICA_SECRETS_DIR:?"), "secrets stay outside"


def test_compose_mounts_contracts_with_their_relative_layout() -> None:
    for name in APP_SERVICES:
        mounts = dict(v.rsplit(":", 2)[:2] for v in _service(name)["volumes"])
        assert mounts == {
            "../contracts/examples": "/etc/respublica/contracts/examples",
            "../contracts/schemas": "/etc/respublica/contracts/schemas",
            SECRETS_DIR + "/kafka/ca.pem": "/etc/respublica/kafka/ca.pem",
        }
        assert _environment(name)["RESPUBLICA_CONTRACTS"] == "/etc/respublica/contracts/examples"


SECRETS_DIR = "${RESPUBLICA_SECRETS_DIR:?run deploy/make_secrets.py and set it in the env file}"


def test_containers_bootstrap_on_a_listener_advertised_inside_the_network() -> None:
    kafka = _environment("kafka")
    advertised = dict(item.split("://") for item in kafka["KAFKA_ADVERTISED_LISTENERS"].split(","))
    listeners = dict(item.split("://") for item in kafka["KAFKA_LISTENERS"].split(","))
    protocols = dict(
        item.split(":") for item in kafka["KAFKA_LISTENER_SECURITY_PROTOCOL_MAP"].split(",")
    )
    assert set(advertised) <= set(listeners) <= set(protocols)
    # The host keeps 127.0.0.1:9092, on the port compose publishes.
    assert advertised["HOST"] == "127.0.0.1:9092"
    assert "127.0.0.1:9092:9092" in _service("kafka")["ports"]
    for name in (*APP_SERVICES, *ON_DEMAND_SERVICES):
        bootstrap = _environment(name)["RESPUBLICA_KAFKA_BOOTSTRAP"]
        (listener,) = [k for k, v in advertised.items() if v == bootstrap]
        assert bootstrap.split(":")[0] == "kafka", "containers reach Kafka by service name"
        assert listeners[listener].endswith(":" + bootstrap.split(":")[1])


def test_compose_never_carries_the_master_key() -> None:
    keys = {
        name: _environment(name).get("RESPUBLICA_MASTER_KEY") for name in _compose()["services"]
    }
    # Only the workers get it, and only from the caller's environment or --env-file.
    assert {name: key for name, key in keys.items() if key is not None} == dict.fromkeys(
        WORKER_SERVICES, "${RESPUBLICA_MASTER_KEY:-}"
    )
    example = (DEPLOY / "compose.env.example").read_text(encoding="utf-8")
    assert "RESPUBLICA_MASTER_KEY=REPLACE_ME" in example


# ------------------------------------------------------------------ Prometheus


def _scrape_jobs() -> dict[str, dict[str, Any]]:
    config = yaml.safe_load((DEPLOY / "prometheus" / "prometheus.yml").read_text())
    return {job["job_name"]: job for job in config["scrape_configs"]}


def test_prometheus_scrapes_gateway_validator_and_every_worker() -> None:
    jobs = _scrape_jobs()
    assert jobs["gateway"]["static_configs"][0]["targets"] == ["gateway:9464"]
    assert jobs["validator"]["static_configs"][0]["targets"] == ["validator:6066"]
    (workers,) = jobs["worker"]["dns_sd_configs"]
    assert workers == {
        "names": list(WORKER_SERVICES),
        "type": "A",
        "port": 6066,
        "refresh_interval": "15s",
    }
    assert all(
        jobs[name].get("metrics_path", "/metrics") == "/metrics"
        for name in ("gateway", "validator", "worker")
    )


def test_prometheus_targets_match_the_kubernetes_ports() -> None:
    deployments = {
        doc["metadata"]["name"]: doc
        for path in (DEPLOY / "k8s").glob("deploy*.yaml")
        for doc in yaml.safe_load_all(path.read_text())
        if doc
    }
    jobs = _scrape_jobs()
    expected = {
        "gateway": jobs["gateway"]["static_configs"][0]["targets"][0].split(":")[1],
        "validator": jobs["validator"]["static_configs"][0]["targets"][0].split(":")[1],
        "worker": str(jobs["worker"]["dns_sd_configs"][0]["port"]),
    }
    for component, port in expected.items():
        names = [n for n in deployments if n.startswith(f"respublica-{component}")]
        assert names, component
        for name in names:
            annotations = deployments[name]["spec"]["template"]["metadata"]["annotations"]
            assert annotations["prometheus.io/port"] == port, name


# ------------------------------------------------------------------ Grafana


def test_grafana_provisioning_matches_the_compose_mounts() -> None:
    grafana = dict(v.split(":")[:2] for v in _service("grafana")["volumes"])
    (datasource,) = yaml.safe_load(
        (DEPLOY / "grafana/provisioning/datasources/prometheus.yml").read_text()
    )["datasources"]
    assert datasource["url"] == "http://prometheus:9090" and datasource["type"] == "prometheus"
    assert "127.0.0.1:9090:9090" in _service("prometheus")["ports"]
    (provider,) = yaml.safe_load(
        (DEPLOY / "grafana/provisioning/dashboards/respublica.yml").read_text()
    )["providers"]
    assert grafana["./grafana/dashboards"] == provider["options"]["path"]
    assert grafana["./grafana/provisioning"] == "/etc/grafana/provisioning"
    home = _environment("grafana")["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"]
    assert home == f"{provider['options']['path']}/{DASHBOARD.name}"


def test_dashboard_panels_all_query_prometheus() -> None:
    ids = [p["id"] for p in _dashboard()["panels"]]
    assert len(ids) == len(set(ids)), "panel ids must be unique"
    for panel in _panels():
        assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}, panel["title"]
        assert panel["targets"], f"{panel['title']}: no query"
        for target in panel["targets"]:
            assert target["expr"].strip() and target["refId"], panel["title"]
            assert target.get("datasource", panel["datasource"]) == panel["datasource"]
        grid = panel["gridPos"]
        assert grid["x"] + grid["w"] <= 24, panel["title"]
    (variable,) = [v for v in _dashboard()["templating"]["list"] if v["type"] == "datasource"]
    assert (variable["name"], variable["query"]) == ("datasource", "prometheus")


def test_dashboard_has_a_row_per_auditor_question() -> None:
    rows = [p["title"].lower() for p in _dashboard()["panels"] if p["type"] == "row"]
    for topic in (
        "reconciliation",
        "suppression",
        "differential privacy",
        "latency",
        "keys",
        "contracts",
    ):
        assert any(topic in row for row in rows), topic


def test_dashboard_uses_exactly_the_exported_metric_names() -> None:
    used = {_metric(name) for expr in _exprs() for name in METRIC_NAME.findall(expr)}
    assert used - set(METRICS) == set(), "unknown (renamed?) metrics in the dashboard"
    assert set(METRICS) - used == set(), "exported metrics missing from the dashboard"


def test_dashboard_queries_only_catalogue_metrics_that_a_process_serves() -> None:
    """docs/metrics.md names the process serving each family; the liveness tests
    (tests/worker/test_metrics_live.py, tests/ingest/test_metrics_live.py) prove each has a
    sample there, so no panel of the dashboard queries a metric that never has one."""
    used = {_metric(name) for expr in _exprs() for name in METRIC_NAME.findall(expr)}
    owners = catalogue()
    assert used - set(owners) == set(), "the dashboard queries metrics outside the catalogue"
    assert all(owners[name] <= set(PROCESSES) and owners[name] for name in used)


def test_dashboard_selects_and_groups_only_by_exported_labels() -> None:
    for expr in _exprs():
        for name, matchers in SELECTOR.findall(expr):
            labels = set(MATCHER.findall(matchers))
            allowed = set(METRICS[_metric(name)])
            if _metric(name) in HISTOGRAMS:
                allowed.add("le")
            assert labels <= allowed, f"{name}: unknown labels {labels - allowed}"
        in_expr = {_metric(n) for n in METRIC_NAME.findall(expr)}
        groupable = set().union(*(METRICS[n] for n in in_expr)) | {"le"}
        for grouping in GROUPING.findall(expr):
            labels = {label.strip() for label in grouping.split(",") if label.strip()}
            assert labels <= groupable, f"{expr}: groups by unknown {labels - groupable}"


def test_metric_names_and_labels_are_the_ones_the_code_exports() -> None:
    metrics = build_metrics()
    exported = {}
    for collector in vars(metrics).values():
        if isinstance(collector, MetricWrapperBase):
            # prometheus_client keeps a family's name and label names in these attributes.
            suffix = "_total" if collector._type == "counter" else ""
            exported[collector._name + suffix] = frozenset(collector._labelnames)
            if collector._type == "histogram":
                assert collector._name in HISTOGRAMS or collector._name not in METRICS
    assert {name: exported.get(name) for name in METRICS} == METRICS
    assert set(METRICS) <= set(METRIC_NAMES)


def test_metric_checks_catch_a_renamed_metric() -> None:
    renamed = "sum(rate(respublica_events_ingest_total[5m]))"
    used = {_metric(n) for n in METRIC_NAME.findall(renamed)}
    assert used - set(METRICS) == {"respublica_events_ingest_total"}
    assert _metric("respublica_end_to_end_latency_seconds_bucket") in METRICS
    assert _metric("respublica_events_ingested_total_count") not in METRICS
