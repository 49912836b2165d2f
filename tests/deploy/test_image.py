"""The `cpu` image, built and run for real: read-only root, non-root, /ready, /fill-mask, /embed."""

from __future__ import annotations

import os
import time

import pytest

from tests.deploy import containers

pytestmark = pytest.mark.container


@pytest.fixture(scope="module")
def running(cpu_image):
    """The image as a hardened deployment runs it: read-only root, /tmp on tmpfs, no capabilities."""
    port = containers.free_port()
    name = f"distilserve-test-{port}"
    containers.run([
        "podman", "run", "-d", "--name", name, "--read-only", "--tmpfs", "/tmp:rw,size=256m",
        "--cap-drop", "ALL", "--security-opt", "no-new-privileges", "-p", f"127.0.0.1:{port}:8000", cpu_image,
    ])
    base_url = f"http://127.0.0.1:{port}"

    def logs() -> str:
        proc = containers.run(["podman", "logs", "--tail", "60", name], check=False)
        return proc.stdout + proc.stderr

    try:
        containers.wait_until_ready(base_url, logs=logs)
        yield name, base_url
    finally:
        containers.run(["podman", "rm", "-f", "-t", "0", name], check=False)


def test_ready_health_info(running):
    _, base_url = running
    assert containers.http("GET", f"{base_url}/health")[0] == 200
    status, ready = containers.http("GET", f"{base_url}/ready")
    assert status == 200 and ready["ready"] is True
    status, info = containers.http("GET", f"{base_url}/info")
    assert status == 200
    assert info["providers"][0] == "CPUExecutionProvider"
    # The image's /models/default is a model repository: the offline default's two models.
    assert [(model["model_id"], model["tasks"]) for model in info["models"]] == [
        ("sentence-transformers/all-MiniLM-L6-v2", ["embed"]),
        ("distilserve/minilm-l6-distilbert-demo", ["fill-mask"]),
    ]
    if "DISTILSERVE_TEST_IMAGE" not in os.environ:
        assert info["sha"] == containers.git_sha() and info["docker_label"] == "distilserve:cpu"


def test_fill_mask(running):
    _, base_url = running
    status, body = containers.http("POST", f"{base_url}/fill-mask", {"inputs": "Paris is the [MASK] of France."})
    assert status == 200, body
    assert len(body) == 5
    assert all(candidate["sequence"] and 0.0 <= candidate["score"] <= 1.0 for candidate in body)


def test_embed(running):
    _, base_url = running
    status, body = containers.http("POST", f"{base_url}/embed", {"inputs": ["a cat sat on the mat", "dogs bark"]})
    assert status == 200, body
    assert len(body) == 2 and len(body[0]) == 384
    norm = sum(x * x for x in body[0]) ** 0.5
    assert abs(norm - 1.0) < 1e-3


def test_bad_input_is_a_client_error(running):
    _, base_url = running
    status, body = containers.http("POST", f"{base_url}/fill-mask", {"inputs": "no mask token here"})
    assert 400 <= status < 500, body


def test_metrics_exposed(running):
    _, base_url = running
    status, text = containers.http("GET", f"{base_url}/metrics")
    assert status == 200
    assert "distilserve_requests_total" in text and "distilserve_stage_duration_seconds_bucket" in text


def test_healthcheck_passes(running):
    name, _ = running
    proc = containers.run(["podman", "healthcheck", "run", name], check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_runs_as_non_root_without_torch(running):
    name, _ = running
    assert containers.run(["podman", "exec", name, "id", "-u"]).stdout.strip() == "10001"
    proc = containers.run(["podman", "exec", name, "python", "-c", "import torch"], check=False)
    assert proc.returncode != 0 and "No module named 'torch'" in proc.stderr


def test_sigterm_stops_cleanly(running):
    """SIGTERM (what `docker stop` and the kubelet send) ends the server gracefully, well before SIGKILL.

    Last in this module: it stops the shared container.
    """
    name, _ = running
    started = time.monotonic()
    containers.run(["podman", "stop", "-t", "30", name])
    elapsed = time.monotonic() - started
    exit_code = containers.run(["podman", "inspect", name, "--format", "{{.State.ExitCode}}"]).stdout.strip()
    assert elapsed < 25, f"stop took {elapsed:.1f}s: SIGTERM was not handled"
    assert exit_code == "0", containers.run(["podman", "logs", "--tail", "30", name], check=False).stderr
