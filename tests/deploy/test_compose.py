"""deploy/docker-compose.yml brought up with podman-compose: the server and Prometheus scraping it.

Grafana's image cannot be pulled here; its provisioning is checked in test_observability.py.
Prometheus is a stand-in built from Debian's package (deploy/podman/prometheus.Containerfile).
"""

from __future__ import annotations

import time

import yaml

import pytest

from tests.conftest import require_tool
from tests.deploy import containers

pytestmark = pytest.mark.container

COMPOSE_FILE = containers.REPO / "deploy" / "docker-compose.yml"


def test_compose_up_prometheus_scrapes_the_service(cpu_image, prometheus_image):
    compose = require_tool("podman-compose")
    app_port, prom_port = containers.free_port(), containers.free_port()
    project = f"distilserve-ci-{app_port}"
    env = {
        **containers.podman_env(),
        "DISTILSERVE_IMAGE": cpu_image,
        "PROMETHEUS_IMAGE": prometheus_image,
        "DISTILSERVE_PORT": str(app_port),
        "PROMETHEUS_PORT": str(prom_port),
    }
    base = [compose, "-p", project, "-f", str(COMPOSE_FILE)]

    def logs() -> str:
        proc = containers.run([*base, "logs"], env=env, check=False, timeout=60)
        return (proc.stdout + proc.stderr)[-6000:]

    containers.run([*base, "up", "-d", "distilserve", "prometheus"], env=env, timeout=300)
    try:
        published = containers.run(["podman", "port", f"{project}_distilserve_1"], env=env).stdout
        assert f"127.0.0.1:{app_port}" in published, published
        containers.wait_until_ready(f"http://127.0.0.1:{app_port}", logs=logs)
        status, _ = containers.http("POST", f"http://127.0.0.1:{app_port}/embed", {"inputs": "hello"})
        assert status == 200

        prometheus = f"http://127.0.0.1:{prom_port}"
        deadline, targets = time.monotonic() + 90, None
        while time.monotonic() < deadline:
            try:
                _, body = containers.http("GET", f"{prometheus}/api/v1/targets")
                targets = body["data"]["activeTargets"]
                if targets and all(t["health"] == "up" for t in targets):
                    break
            except (OSError, KeyError, TypeError):
                pass
            time.sleep(2)
        assert targets, f"Prometheus has no targets\n{logs()}"
        assert [(t["labels"]["job"], t["health"]) for t in targets] == [("distilserve", "up")], f"{targets}\n{logs()}"

        # What Prometheus stores is the app's own series: it sees the replica turn ready.
        deadline, result = time.monotonic() + 30, None
        while time.monotonic() < deadline:
            _, result = containers.http("GET", f"{prometheus}/api/v1/query?query=distilserve_ready")
            # One series per served model: the image's offline default has two.
            if [sample["value"][1] for sample in result["data"]["result"]] == ["1", "1"]:
                break
            time.sleep(2)
        else:
            raise AssertionError(f"Prometheus never saw distilserve_ready == 1 for both models: {result}")
    finally:
        containers.run([*base, "down", "-v"], env=env, check=False, timeout=120)


def test_gpu_override_merges_into_a_gpu_service():
    compose = require_tool("podman-compose")
    proc = containers.run([compose, "-f", str(COMPOSE_FILE), "-f", str(COMPOSE_FILE.with_name("docker-compose.gpu.yml")),
                           "config"], timeout=60)
    service = yaml.safe_load(proc.stdout)["services"]["distilserve"]
    assert service["build"] == {"context": str(containers.REPO), "dockerfile": "Dockerfile", "target": "gpu"}
    assert service["deploy"]["resources"]["reservations"]["devices"][0]["driver"] == "nvidia"
    assert service["environment"]["DISTILSERVE_VARIANT"] == "fp16"
    assert service["read_only"] is True and service["ports"] == ["127.0.0.1:8000:8000"]


def test_multi_model_override_serves_the_mounted_model_directories():
    compose = require_tool("podman-compose")
    override = COMPOSE_FILE.with_name("docker-compose.multi-model.yml")
    proc = containers.run([compose, "-f", str(COMPOSE_FILE), "-f", str(override), "config"], timeout=60)
    service = yaml.safe_load(proc.stdout)["services"]["distilserve"]
    # The override adds to the base service instead of replacing it.
    assert service["build"]["target"] == "cpu" and service["read_only"] is True and "/tmp" in service["tmpfs"]
    assert service["environment"]["DISTILSERVE_LOG_LEVEL"] == "info"
    assert service["environment"]["DISTILSERVE_MODELS_FILE"] == "/etc/distilserve/models.yaml"
    assert "--model-dir" not in service["command"]
    targets = {volume.split(":")[1]: volume.split(":")[2] for volume in service["volumes"]}
    assert targets == {"/models/store": "ro", "/etc/distilserve/models.yaml": "ro"}
