"""The rendered cpu Deployment really runs: `podman kube play` starts its pod template (image, env
from the ConfigMap, read-only root, /tmp emptyDir, probes) and a request goes through it."""

from __future__ import annotations

import pytest
import yaml

from tests.deploy import containers
from tests.deploy.containers import kustomize as render

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


def test_kube_play_external_model_overlay(cpu_image, tmp_path):
    """The external-model overlay serves whatever the volume holds (podman maps the claim to a named
    volume), and its init container refuses an empty volume."""
    port = containers.free_port()
    volume = f"distilserve-models-{port}"
    empty = tmp_path / "empty"
    empty.mkdir()
    manifest = tmp_path / "external.yaml"
    try:
        containers.run(["podman", "volume", "create", volume])
        containers.run(["podman", "run", "--rm", "--user", "0", "-v", f"{volume}:/dst", "--entrypoint", "cp",
                        cpu_image, "-r", "/models/default/all-MiniLM-L6-v2/.", "/dst/"])
        docs = [doc for doc in yaml.safe_load_all(render("external-model"))
                if doc and doc["kind"] in ("ConfigMap", "Deployment")]
        deployment = next(doc for doc in docs if doc["kind"] == "Deployment")
        pod = deployment["spec"]["template"]["spec"]

        # The init container, run as the kubelet would, on an empty and on a filled volume.
        (init,) = pod.pop("initContainers")
        check = ["podman", "run", "--rm", "--read-only", "--entrypoint", init["command"][0]]
        refused = containers.run([*check, "-v", f"{empty}:/models/default:ro", cpu_image, *init["command"][1:],
                                  *init["args"]], check=False)
        assert refused.returncode != 0 and "manifest.json missing" in refused.stderr, refused.stderr
        containers.run([*check, "-v", f"{volume}:/models/default:ro", cpu_image, *init["command"][1:], *init["args"]])

        # podman 4.3 races removing a run-once init container, so the pod runs without it.
        deployment["spec"]["replicas"] = 1
        deployment["metadata"]["name"] = f"distilserve-ext-{port}"
        pod["containers"][0]["image"] = cpu_image
        pod["containers"][0]["ports"][0].update(hostPort=port, hostIP="127.0.0.1")
        (claim,) = [v for v in pod["volumes"] if "persistentVolumeClaim" in v]
        claim["persistentVolumeClaim"]["claimName"] = volume
        manifest.write_text(yaml.safe_dump_all(docs))

        played = containers.run(["podman", "kube", "play", str(manifest)], timeout=300).stdout.split()
        (container_id,) = played[played.index("Container:") + 1:]
        mounts = containers.run(["podman", "inspect", container_id, "--format",
                                 "{{range .Mounts}}{{.Name}}:{{.Destination}}:{{.RW}} {{end}}"]).stdout.split()
        assert f"{volume}:/models/default:false" in mounts, mounts
        base_url = f"http://127.0.0.1:{port}"
        containers.wait_until_ready(base_url)
        status, body = containers.http("POST", f"{base_url}/embed", {"inputs": ["from a volume"]})
        assert status == 200 and len(body[0]) == 384, body
    finally:
        if manifest.exists():
            containers.run(["podman", "kube", "down", str(manifest)], check=False, timeout=120)
        containers.run(["podman", "volume", "rm", "-f", volume], check=False)
