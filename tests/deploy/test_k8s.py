"""deploy/k8s: every overlay renders with kustomize and validates strictly against the Kubernetes schema."""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path, PurePosixPath

import pytest
import yaml

from app.model_config import options_for, read_models_file
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


def models_file_of(docs: dict[str, dict], directory: Path) -> Path:
    """The models file the overlay's settings name, written out from its ConfigMap into `directory`."""
    name = PurePosixPath(docs["distilserve-config"]["data"]["DISTILSERVE_MODELS_FILE"]).name
    path = directory / name
    path.write_text(docs["distilserve-models"]["data"][name])
    return path


def mount_of(container: dict, pod: dict, path: str) -> tuple[dict, dict]:
    """The volume mount (and its volume) that holds `path` inside this container."""
    mounts = [m for m in container["volumeMounts"] if PurePosixPath(path).is_relative_to(m["mountPath"])]
    assert mounts, f"nothing in {container['name']} is mounted where {path} lies"
    mount = max(mounts, key=lambda m: len(m["mountPath"]))
    return mount, next(v for v in pod["volumes"] if v["name"] == mount["name"])


def validate(manifest: str) -> subprocess.CompletedProcess[str]:
    validator = require_tool("kubernetes-validate")
    return subprocess.run([validator, "--strict", "--quiet", "-"], input=manifest,
                          capture_output=True, text=True, timeout=120)


def test_overlays_present():
    assert OVERLAYS == ["cpu", "external-model", "gpu", "multi-model"]


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


def test_multi_model_overlay_serves_every_directory_from_the_volume():
    docs = resources("multi-model")
    pod = docs["Deployment"]["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    (init,) = pod["initContainers"]
    settings = docs["distilserve-config"]["data"]
    # The image's CMD passes --model-dir, which would win over the ConfigMap's DISTILSERVE_MODEL_DIR.
    assert not any(arg.startswith("--model-dir") for arg in container.get("command", []) + container.get("args", []))
    assert container["command"][:3] == ["python", "-m", "app"]
    model_dirs = settings["DISTILSERVE_MODEL_DIR"].split(",")
    assert len(model_dirs) == 2
    claim = docs["PersistentVolumeClaim"]["metadata"]["name"]
    for model_dir in model_dirs:
        for checked in (container, init):
            mount, volume = mount_of(checked, pod, model_dir)
            assert mount["readOnly"] is True
            assert volume["persistentVolumeClaim"]["claimName"] == claim
    # The init container checks the same list the server is given.
    assert init["envFrom"] == container["envFrom"]
    assert "DISTILSERVE_MODEL_DIR" in init["args"][0]


def test_multi_model_overlay_mounts_the_models_file_the_setting_names():
    docs = resources("multi-model")
    pod = docs["Deployment"]["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    models_file = PurePosixPath(docs["distilserve-config"]["data"]["DISTILSERVE_MODELS_FILE"])
    mount, volume = mount_of(container, pod, str(models_file))
    assert mount["readOnly"] is True
    assert volume["configMap"]["name"] == docs["distilserve-models"]["metadata"]["name"]
    assert str(models_file.relative_to(mount["mountPath"])) in docs["distilserve-models"]["data"]


def test_multi_model_models_file_is_one_the_server_accepts(tmp_path, monkeypatch):
    """Parsed by the server's own reader and applied over the overlay's settings, as at start-up (an
    unknown key or a bad value refuses start-up there). The ids are checked against the directories
    by name only: the manifests live on the volume, not in the repository."""
    docs = resources("multi-model")
    settings = settings_of(docs["distilserve-config"], monkeypatch)
    overrides = read_models_file(models_file_of(docs, tmp_path))
    for model_id in overrides:
        options_for(model_id, settings.default_model_options(), overrides)
    # Each directory is named after its model id's last part, as python -m model_export ID --out NAME is run.
    assert sorted(model_id.rsplit("/", 1)[-1] for model_id in overrides) == sorted(p.name for p in settings.model_dir)


def test_multi_model_overlay_gives_the_models_more_time_to_start():
    """Models load one after the other, then warm up; /ready (all of them warm) gates every probe."""
    def startup_budget_s(overlay: str) -> int:
        (container,) = resources(overlay)["Deployment"]["spec"]["template"]["spec"]["containers"]
        return container["startupProbe"]["periodSeconds"] * container["startupProbe"]["failureThreshold"]

    assert startup_budget_s("multi-model") > startup_budget_s("cpu")


def test_multi_model_overlay_starts_the_server_with_every_model(tmp_path, monkeypatch, tiny_mlm_checkpoint):
    """The overlay's settings and models file, as the pod gets them, start the real server in-process: the
    volume is a temporary directory holding a tiny model exported under each id the models file names."""
    from fastapi.testclient import TestClient

    from app.server import create_app
    from model_export.pipeline import ExportOptions, export_model

    docs = resources("multi-model")
    config = docs["distilserve-config"]
    models_file = models_file_of(docs, tmp_path)
    overrides = read_models_file(models_file)
    id_of = {model_id.rsplit("/", 1)[-1]: model_id for model_id in overrides}
    model_dirs = [tmp_path / "store" / PurePosixPath(d).name for d in config["data"]["DISTILSERVE_MODEL_DIR"].split(",")]
    for model_dir in model_dirs:
        export_model(str(tiny_mlm_checkpoint), model_dir, ExportOptions(variants=("fp32",), model_id=id_of[model_dir.name]))
    local = {"DISTILSERVE_MODEL_DIR": ",".join(map(str, model_dirs)), "DISTILSERVE_MODELS_FILE": str(models_file)}
    settings = settings_of({"data": config["data"] | local}, monkeypatch)

    with TestClient(create_app(settings)) as client:
        deadline = time.monotonic() + 60
        while client.get("/ready").status_code != 200:
            assert time.monotonic() < deadline, client.get("/ready").json()
            time.sleep(0.05)
        served = [model["id"] for model in client.get("/v1/models").json()["data"]]
        info = {model["model_id"]: model for model in client.get("/info").json()["models"]}
        metrics = client.get("/metrics").text
    assert served == [id_of[d.name] for d in model_dirs]
    for model_id, options in overrides.items():
        assert info[model_id]["max_batch_requests"] == options.get("max_batch_size", settings.max_batch_size)
        assert info[model_id]["max_top_k"] == options.get("max_top_k", settings.max_top_k)
        assert f'distilserve_ready{{model="{model_id}"}} 1.0' in metrics
