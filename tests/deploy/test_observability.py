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


def exported_metric_names() -> set[str]:
    """Every sample name app.metrics can expose (a labelled collector exposes nothing until used)."""
    from app.metrics import Metrics

    suffixes = {"counter": ("_total",), "histogram": ("_bucket", "_sum", "_count"), "gauge": ("",),
                "summary": ("", "_sum", "_count"), "info": ("_info",)}
    names = set()
    for family in Metrics().registry.collect():
        names.update(family.name + suffix for suffix in suffixes[family.type])
    return names


def dashboard_queries(path: Path) -> list[str]:
    dashboard = json.loads(path.read_text())
    panels = list(dashboard["panels"])
    for panel in dashboard["panels"]:
        panels.extend(panel.get("panels", []))
    return [target["expr"] for panel in panels for target in panel.get("targets", [])]


def test_there_is_a_dashboard():
    assert [p.name for p in DASHBOARDS] == ["distilserve.json"]


@pytest.mark.parametrize("path", DASHBOARDS, ids=lambda p: p.name)
def test_every_dashboard_query_names_an_exported_metric(path):
    exported = exported_metric_names()
    queries = dashboard_queries(path)
    assert queries
    for expr in queries:
        names = set(re.findall(r"\b(distilserve_[a-z_]+)", expr))
        assert names, f"query names no distilserve metric: {expr}"
        assert names <= exported, f"{sorted(names - exported)} not exported by app.metrics (query: {expr})"


@pytest.mark.parametrize("path", DASHBOARDS, ids=lambda p: p.name)
def test_dashboard_covers_what_operators_ask(path):
    text = " ".join(dashboard_queries(path))
    for metric in ("distilserve_requests_total", "distilserve_stage_duration_seconds_bucket", "distilserve_batch_size",
                   "distilserve_queue_depth", "distilserve_failures_total", "distilserve_provider_info"):
        assert metric in text, f"dashboard lacks {metric}"
    for quantile in ("0.5", "0.95", "0.99"):
        assert f"histogram_quantile({quantile}, sum by (le, stage)" in text


def test_dashboards_use_the_provisioned_datasource():
    datasources = _yaml(DEPLOY / "grafana" / "provisioning" / "datasources" / "prometheus.yml")["datasources"]
    assert [(d["type"], d["url"], d["uid"]) for d in datasources] == [("prometheus", "http://prometheus:9090", "prometheus")]
    for path in DASHBOARDS:
        for panel in json.loads(path.read_text())["panels"]:
            assert panel["datasource"] == {"type": "prometheus", "uid": "prometheus"}, panel["title"]


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
