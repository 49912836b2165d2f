"""The rendered cpu Deployment really runs: `podman kube play` starts its pod template (image, env
from the ConfigMap, read-only root, /tmp emptyDir, probes) and a request goes through it."""

from __future__ import annotations

import pytest
import yaml

from tests.deploy import containers
from tests.deploy.test_k8s import render

pytestmark = pytest.mark.container


def test_kube_play_cpu_deployment(cpu_image, tmp_path):
    docs = [doc for doc in yaml.safe_load_all(render("cpu")) if doc and doc["kind"] in ("ConfigMap", "Deployment")]
    deployment = next(doc for doc in docs if doc["kind"] == "Deployment")
    # One pod is enough here, and podman has no Service: publish the container port on localhost.
    deployment["spec"]["replicas"] = 1
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    assert container["image"] == "distilserve:cpu"
    container["image"] = cpu_image
    port = containers.free_port()
    container["ports"][0].update(hostPort=port, hostIP="127.0.0.1")
    deployment["metadata"]["name"] = f"distilserve-kube-{port}"
    manifest = tmp_path / "cpu.yaml"
    manifest.write_text(yaml.safe_dump_all(docs))

    played = containers.run(["podman", "kube", "play", str(manifest)], timeout=300).stdout.split()
    # Output: "Pod:", the pod id, "Container:", the container id(s).
    (container_id,) = played[played.index("Container:") + 1:]

    def logs() -> str:
        proc = containers.run(["podman", "logs", "--tail", "60", container_id], check=False)
        return proc.stdout + proc.stderr

    try:
        base_url = f"http://127.0.0.1:{port}"
        containers.wait_until_ready(base_url, logs=logs)
        status, body = containers.http("POST", f"{base_url}/embed", {"inputs": ["through the pod"]})
        assert status == 200 and len(body[0]) == 384, body
        status, info = containers.http("GET", f"{base_url}/info")
        assert info["providers"][0] == "CPUExecutionProvider"
        # The ConfigMap's settings reached the server.
        assert info["variant"] == "fp32"
        assert containers.run(["podman", "exec", container_id, "id", "-u"]).stdout.strip() == "10001"
        probe = containers.run(["podman", "exec", container_id, "touch", "/opt/venv/x"], check=False)
        assert probe.returncode != 0 and "Read-only file system" in probe.stderr
    finally:
        containers.run(["podman", "kube", "down", str(manifest)], check=False, timeout=120)
