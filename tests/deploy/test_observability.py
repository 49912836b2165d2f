"""Compose, Prometheus and Grafana files, checked without containers: they parse, point at each other,
and every dashboard query names a metric the app really exports."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import yaml

from tests.deploy.containers import REPO

DEPLOY = REPO / "deploy"
DASHBOARDS = sorted((DEPLOY / "grafana" / "dashboards").glob("*.json"))


def _yaml(path: Path):
    return yaml.safe_load(path.read_text())


# Labels Prometheus attaches to every scraped series.
TARGET_LABELS = {"instance", "job"}
SAMPLE_SUFFIXES = {"counter": ("_total",), "histogram": ("_bucket", "_sum", "_count"), "gauge": ("",),
                   "summary": ("", "_sum", "_count"), "info": ("_info",)}


def exported_metrics() -> dict[str, set[str]]:
    """Every sample name app.metrics can expose, with its label names (a labelled collector exposes no
    sample until used, so the names come from the collectors themselves)."""
    from prometheus_client.metrics import MetricWrapperBase

    from app.metrics import Metrics

    metrics = Metrics()
    collectors = [value for value in vars(metrics).values() if isinstance(value, MetricWrapperBase)]
    exported: dict[str, set[str]] = {}
    for collector in collectors:
        (family,) = collector.describe()
        for suffix in SAMPLE_SUFFIXES[family.type]:
            # prometheus_client has no public accessor for a collector's label names.
            exported[family.name + suffix] = set(collector._labelnames) | ({"le"} if suffix == "_bucket" else set())
    assert {family.name for family in metrics.registry.collect()} == {c.describe()[0].name for c in collectors}
    return exported


def panel_targets(path: Path) -> list[dict]:
    dashboard = json.loads(path.read_text())
    panels = list(dashboard["panels"])
    for panel in dashboard["panels"]:
        panels.extend(panel.get("panels", []))
    return [target for panel in panels for target in panel.get("targets", [])]


def dashboard_targets(path: Path) -> list[dict]:
    """The panels' queries, and the template variables' as targets without a legend."""
    variables = json.loads(path.read_text())["templating"]["list"]
    return panel_targets(path) + [{"expr": variable["definition"]} for variable in variables]


def dashboard_queries(path: Path) -> list[str]:
    return [target["expr"] for target in dashboard_targets(path)]


def selectors(expr: str) -> list[tuple[str, dict[str, str]]]:
    """Each distilserve metric the query names, with the label matchers of its selector."""
    found = []
    for name, matchers in re.findall(r"\b(distilserve_[a-z_]+)(?:\{([^}]*)\})?", expr):
        found.append((name, dict(re.findall(r"(\w+)\s*((?:=~|!~|!=|=)\s*\"[^\"]*\")", matchers))))
    return found


def test_there_is_a_dashboard():
    assert [p.name for p in DASHBOARDS] == ["distilserve.json"]


@pytest.mark.parametrize("path", DASHBOARDS, ids=lambda p: p.name)
def test_every_dashboard_query_names_an_exported_metric(path):
    exported = exported_metrics()
    queries = dashboard_queries(path)
    assert queries
    for expr in queries:
        names = {name for name, _ in selectors(expr)}
        assert names, f"query names no distilserve metric: {expr}"
        assert names <= exported.keys(), f"{sorted(names - exported.keys())} not exported by app.metrics (query: {expr})"


def check_query(expr: str, exported: dict[str, set[str]], legend: str = "", target_labels: set[str] = TARGET_LABELS) -> None:
    """The query names only exported metrics, and only labels they have (or the scrape adds): in matchers,
    in `by (...)` groupings and in `{{label}}` legends."""
    names = {name for name, _ in selectors(expr)}
    assert names, f"query names no distilserve metric: {expr}"
    assert names <= exported.keys(), f"{sorted(names - exported.keys())} not exported by app.metrics (query: {expr})"
    metric_labels = [exported[name] | target_labels for name, _ in selectors(expr)]
    for name, matchers in selectors(expr):
        unknown = matchers.keys() - exported[name] - target_labels
        assert not unknown, f"{name} has no {sorted(unknown)}: {expr}"
    groupings = [{label.strip() for label in group.split(",") if label.strip()}
                 for group in re.findall(r"\b(?:by|without)\s*\(([^)]*)\)", expr)]
    for grouping in groupings:
        for labels in metric_labels:
            assert grouping <= labels, f"grouping by {sorted(grouping - labels)}, which a metric lacks: {expr}"
    used = set(re.findall(r"\{\{\s*(\w+)\s*\}\}", legend))
    # After an aggregation only its grouping labels are left (le is used up by histogram_quantile).
    kept = set.intersection(*groupings) - {"le"} if groupings else set.union(*metric_labels)
    assert used <= kept, f"legend {legend!r} names {sorted(used - kept)}, not in the result: {expr}"


@pytest.mark.parametrize("path", DASHBOARDS, ids=lambda p: p.name)
def test_every_label_a_query_uses_is_one_its_metrics_have(path):
    """Matchers, `by (...)` groupings and `{{label}}` legends: a renamed label leaves a panel empty or
    its legend blank, with no error anywhere."""
    exported = exported_metrics()
    for target in dashboard_targets(path):
        check_query(target["expr"], exported, target.get("legendFormat", ""))


@pytest.mark.parametrize("path", DASHBOARDS, ids=lambda p: p.name)
def test_every_panel_follows_the_model_variable(path):
    """The `model` variable lists the served models; every panel query keeps only the chosen ones."""
    exported = exported_metrics()
    dashboard = json.loads(path.read_text())
    (variable,) = [v for v in dashboard["templating"]["list"] if v["name"] == "model"]
    assert variable["type"] == "query" and variable["datasource"] == {"type": "prometheus", "uid": "prometheus"}
    match = re.fullmatch(r"label_values\((distilserve_[a-z_]+),\s*model\)", variable["definition"])
    assert match and "model" in exported[match[1]], variable["definition"]
    # What Grafana's variable editor saves; it rebuilds the query from metric and label.
    assert variable["query"] | {"metric": match[1], "label": "model", "query": variable["definition"]} == variable["query"]
    # "All" is a regex that also matches the empty model of requests refused before a model was picked.
    assert variable["multi"] and variable["includeAll"] and variable["allValue"] == ".*"
    for target in panel_targets(path):
        for name, matchers in selectors(target["expr"]):
            assert matchers.get("model") == '=~"$model"', f"{name} is not filtered by $model: {target['expr']}"


@pytest.mark.parametrize("path", DASHBOARDS, ids=lambda p: p.name)
def test_dashboard_covers_what_operators_ask(path):
    text = " ".join(dashboard_queries(path))
    for metric in ("distilserve_requests_total", "distilserve_stage_duration_seconds_bucket", "distilserve_batch_size",
                   "distilserve_queue_depth", "distilserve_admitted_tokens", "distilserve_expected_wait_seconds",
                   "distilserve_failures_total",
                   "distilserve_provider_info", "distilserve_ready"):
        assert metric in text, f"dashboard lacks {metric}"
    for quantile in ("0.5", "0.95", "0.99"):
        assert f"histogram_quantile({quantile}, sum by (le, model, stage)" in text


def test_dashboards_use_the_provisioned_datasource():
    datasources = _yaml(DEPLOY / "grafana" / "provisioning" / "datasources" / "prometheus.yml")["datasources"]
    assert [(d["type"], d["url"], d["uid"]) for d in datasources] == [("prometheus", "http://prometheus:9090", "prometheus")]
    for path in DASHBOARDS:
        dashboard = json.loads(path.read_text())
        for item in dashboard["panels"] + dashboard["templating"]["list"]:
            assert item["datasource"] == {"type": "prometheus", "uid": "prometheus"}, item.get("title", item.get("name"))


def test_dashboard_provider_path_is_where_compose_mounts_dashboards():
    provider = _yaml(DEPLOY / "grafana" / "provisioning" / "dashboards" / "distilserve.yml")["providers"][0]
    grafana = _yaml(DEPLOY / "docker-compose.yml")["services"]["grafana"]
    assert f"./grafana/dashboards:{provider['options']['path']}:ro" in grafana["volumes"]
    assert "./grafana/provisioning:/etc/grafana/provisioning:ro" in grafana["volumes"]


def test_prometheus_scrapes_the_compose_service():
    config = _yaml(DEPLOY / "prometheus" / "prometheus.yml")
    compose = _yaml(DEPLOY / "docker-compose.yml")
    (job,) = config["scrape_configs"]
    assert job["metrics_path"] == "/metrics"
    assert job["static_configs"][0]["targets"] == ["distilserve:8000"]
    assert "distilserve" in compose["services"]


def test_compose_publishes_on_localhost_by_default():
    compose = _yaml(DEPLOY / "docker-compose.yml")
    for name, service in compose["services"].items():
        for port in service.get("ports", []):
            assert re.match(r"(\$\{[A-Z_]+:-127\.0\.0\.1\}|127\.0\.0\.1):", port), f"{name} publishes {port} beyond localhost"


def test_compose_service_is_hardened():
    service = _yaml(DEPLOY / "docker-compose.yml")["services"]["distilserve"]
    assert service["read_only"] is True and "/tmp" in service["tmpfs"]
    assert service["build"]["target"] == "cpu"


def test_gpu_override_reserves_one_nvidia_device():
    service = _yaml(DEPLOY / "docker-compose.gpu.yml")["services"]["distilserve"]
    (device,) = service["deploy"]["resources"]["reservations"]["devices"]
    assert device == {"driver": "nvidia", "count": 1, "capabilities": ["gpu"]}
    assert service["build"]["target"] == "gpu"
    assert service["environment"]["DISTILSERVE_PROVIDERS"].startswith("CUDAExecutionProvider")


def test_multi_model_override_mounts_what_its_settings_name():
    """Every model directory lies on the read-only model store, and the models file the setting names is
    mounted read-only from a file that exists and that the server's own reader parses."""
    from app.model_config import read_models_file

    service = _yaml(DEPLOY / "docker-compose.multi-model.yml")["services"]["distilserve"]
    environment = service["environment"]
    mounts = {}
    for volume in service["volumes"]:
        source, target, mode = re.sub(r"\$\{[A-Z_]+:-([^}]+)\}", r"\1", volume).split(":")
        mounts[target] = DEPLOY / source
        assert mode == "ro", volume
    assert "--model-dir" not in service["command"], "the flag would win over DISTILSERVE_MODEL_DIR"
    model_dirs = [Path(d) for d in environment["DISTILSERVE_MODEL_DIR"].split(",")]
    assert len(model_dirs) >= 2 and all(str(d.parent) in mounts for d in model_dirs)
    models_file = mounts[environment["DISTILSERVE_MODELS_FILE"]]
    ids = read_models_file(models_file)
    # Each directory is named after its model id's last part, as in the Kubernetes overlay.
    assert sorted(model_id.rsplit("/", 1)[-1] for model_id in ids) == sorted(d.name for d in model_dirs)
