"""deploy/k8s: every overlay renders with kustomize and validates strictly against the Kubernetes schema."""

from __future__ import annotations

import os
import subprocess

import pytest
import yaml

from app.settings import ENV_PREFIX, Settings
from tests.conftest import require_tool
from tests.deploy.containers import K8S
from tests.deploy.containers import kustomize as render

pytestmark = pytest.mark.container

OVERLAYS = sorted(p.name for p in (K8S / "overlays").iterdir() if (p / "kustomization.yaml").is_file())


def resources(overlay: str) -> dict[str, dict]:
    """The rendered objects by kind; ConfigMaps by their generator's name (kustomize appends a hash)."""
    docs: dict[str, dict] = {}
    for doc in yaml.safe_load_all(render(overlay)):
        if doc:
            key = doc["metadata"]["name"].rsplit("-", 1)[0] if doc["kind"] == "ConfigMap" else doc["kind"]
            assert key not in docs, f"{overlay} renders two {key}"
            docs[key] = doc
    return docs


def settings_of(config_map: dict, monkeypatch: pytest.MonkeyPatch) -> Settings:
    """The server's settings from this ConfigMap alone, as envFrom hands it to the container."""
    for name in [name for name in os.environ if name.startswith(ENV_PREFIX)]:
        monkeypatch.delenv(name)
    for name, value in config_map["data"].items():
        monkeypatch.setenv(name, value)
    return Settings()


def validate(manifest: str) -> subprocess.CompletedProcess[str]:
    validator = require_tool("kubernetes-validate")
    return subprocess.run([validator, "--strict", "--quiet", "-"], input=manifest,
                          capture_output=True, text=True, timeout=120)


def test_overlays_present():
    assert OVERLAYS == ["cpu", "external-model", "gpu"]


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_overlay_validates_strictly(overlay):
    proc = validate(render(overlay))
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_strict_validation_catches_an_unknown_field():
    """The check above has teeth: a misspelt field fails it."""
    broken = render("cpu").replace("readOnlyRootFilesystem: true", "readOnlyRootFileSystem: true")
    assert validate(broken).returncode != 0


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_overlay_is_complete_and_hardened(overlay):
    docs = resources(overlay)
    assert {"Deployment", "Service", "distilserve-config", "HorizontalPodAutoscaler", "PodDisruptionBudget"} <= docs.keys()
    pod = docs["Deployment"]["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert container["startupProbe"]["httpGet"]["path"] == "/ready"
    assert container["readinessProbe"]["httpGet"]["path"] == "/ready"
    assert container["livenessProbe"]["httpGet"]["path"] == "/health"
    assert {"mountPath": "/tmp", "name": "tmp"} in container["volumeMounts"]
    assert container["resources"]["requests"]["memory"]
    assert container["envFrom"][0]["configMapRef"]["name"] == docs["distilserve-config"]["metadata"]["name"]
    assert docs["HorizontalPodAutoscaler"]["spec"]["scaleTargetRef"]["name"] == docs["Deployment"]["metadata"]["name"]
    labels = docs["Deployment"]["spec"]["template"]["metadata"]["labels"]
    for selector in (docs["Service"]["spec"]["selector"], docs["PodDisruptionBudget"]["spec"]["selector"]["matchLabels"]):
        assert selector.items() <= labels.items()


def test_gpu_overlay_asks_for_one_gpu_fp16_and_cuda():
    docs = resources("gpu")
    pod = docs["Deployment"]["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert container["image"] == "distilserve:gpu"
    assert container["resources"]["limits"]["nvidia.com/gpu"] == 1
    assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in pod["tolerations"]
    assert pod["nodeSelector"]
    settings = docs["distilserve-config"]["data"]
    assert settings["DISTILSERVE_VARIANT"] == "fp16"
    assert settings["DISTILSERVE_PROVIDERS"].split(",")[0] == "CUDAExecutionProvider"


def test_cpu_overlay_runs_the_cpu_image_on_cpu():
    docs = resources("cpu")
    (container,) = docs["Deployment"]["spec"]["template"]["spec"]["containers"]
    assert container["image"] == "distilserve:cpu"
    assert docs["distilserve-config"]["data"]["DISTILSERVE_PROVIDERS"] == "CPUExecutionProvider"


def test_external_model_overlay_mounts_a_volume_over_the_baked_model():
    docs = resources("external-model")
    pod = docs["Deployment"]["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert {"mountPath": "/models/default", "name": "model", "readOnly": True} in container["volumeMounts"]
    assert pod["initContainers"][0]["volumeMounts"][0]["mountPath"] == "/models/default"
    assert pod["initContainers"][0]["image"] == container["image"] == "distilserve:cpu"
    claim = next(v for v in pod["volumes"] if v["name"] == "model")["persistentVolumeClaim"]["claimName"]
    assert claim == docs["PersistentVolumeClaim"]["metadata"]["name"]


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_setting_in_the_config_map_is_one_the_server_reads(overlay, monkeypatch):
    """The server ignores an env var it does not know, so a misspelt setting would pass unnoticed."""
    config_map = resources(overlay)["distilserve-config"]
    fields = {ENV_PREFIX + name.upper() for name in Settings.model_fields}
    assert set(config_map["data"]) <= fields, sorted(set(config_map["data"]) - fields)
    settings_of(config_map, monkeypatch)
