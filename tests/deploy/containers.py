"""Podman for the deployment tests: one settings file, one base image, images built once per session.

The hosts these tests run on have no Docker daemon and no registry (see docs/deploy.md):
podman runs with deploy/podman/containers.conf, the Debian base image is debootstrapped locally,
and pip inside a build reaches PyPI through the host's CA bundle.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
CONTAINERS_CONF = REPO / "deploy" / "podman" / "containers.conf"
BASE_IMAGE_SCRIPT = REPO / "deploy" / "podman" / "base-image.sh"
PIP_BUILD_CONF = REPO / "deploy" / "podman" / "pip-build.conf"
HOST_CA_BUNDLE = Path("/etc/ssl/certs/ca-certificates.crt")
# The torch CPU wheel on this kind of host; without it the build uses the PyTorch CPU index.
HOST_WHEELS = Path("/opt/wheels")

K8S = REPO / "deploy" / "k8s"

BASE_IMAGE = "debian:bookworm-slim"
CPU_IMAGE = "localhost/distilserve:cpu"
GPU_IMAGE = "localhost/distilserve:gpu"
PROMETHEUS_IMAGE = "localhost/distilserve-ci/prometheus:bookworm"


def podman_env() -> dict[str, str]:
    return {**os.environ, "CONTAINERS_CONF": str(CONTAINERS_CONF)}


def run(args: list[str], *, timeout: float = 600, check: bool = True, **kwargs: Any) -> subprocess.CompletedProcess[str]:
    """Run a command with the podman settings; on failure the error carries its output."""
    proc = subprocess.run(
        args, env=kwargs.pop("env", podman_env()), capture_output=True, text=True, timeout=timeout, **kwargs
    )
    if check and proc.returncode != 0:
        raise AssertionError(
            f"{' '.join(args)} exited {proc.returncode}\n--- stdout\n{proc.stdout[-4000:]}\n--- stderr\n{proc.stderr[-6000:]}"
        )
    return proc


def ensure_base_image() -> None:
    run(["bash", str(BASE_IMAGE_SCRIPT), BASE_IMAGE], timeout=900)


def build_args() -> list[str]:
    """podman build flags that let RUN steps use pip behind the host's TLS proxy."""
    args = ["--pull=never", "--network", "host", "--format", "docker"]
    args += ["-v", f"{HOST_CA_BUNDLE}:/run/host-ca.crt:ro", "-v", f"{PIP_BUILD_CONF}:/etc/pip.conf:ro"]
    if any(HOST_WHEELS.glob("torch-*.whl")):
        args += ["-v", f"{HOST_WHEELS}:/run/host-wheels:ro", "--build-arg", "TORCH_INDEX_URL="]
    return args


def git_sha() -> str:
    proc = subprocess.run(["git", "-C", str(REPO), "rev-parse", "HEAD"], capture_output=True, text=True)
    return proc.stdout.strip() or "unknown"


def build(tag: str, *, target: str | None = None, containerfile: Path | None = None,
          context: Path = REPO, timeout: float = 1800, extra: tuple[str, ...] = ()) -> None:
    args = ["podman", "build", *build_args(), *extra, "-t", tag]
    if target:
        args += ["--target", target]
    if containerfile:
        args += ["-f", str(containerfile)]
    run([*args, str(context)], timeout=timeout)


def image_size_bytes(image: str) -> int:
    return int(run(["podman", "image", "inspect", image, "--format", "{{.Size}}"]).stdout.strip())


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def http(method: str, url: str, body: Any = None, timeout: float = 30) -> tuple[int, Any]:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, method=method, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            raw = response.read()
            status = response.status
    except urllib.error.HTTPError as err:
        raw, status = err.read(), err.code
    try:
        return status, json.loads(raw)
    except ValueError:
        return status, raw.decode(errors="replace")


def wait_until_ready(base_url: str, timeout: float = 300, logs: Any = None) -> None:
    """Poll /ready until it answers 200; on timeout fail with the container's logs."""
    deadline = time.monotonic() + timeout
    last: object = None
    while time.monotonic() < deadline:
        try:
            status, body = http("GET", f"{base_url}/ready", timeout=5)
            if status == 200:
                return
            last = (status, body)
        except OSError as err:
            last = err
        time.sleep(1)
    tail = logs() if logs else ""
    raise AssertionError(f"{base_url}/ready not 200 within {timeout:.0f}s (last: {last})\n{tail}")


def kustomize(overlay: str | Path) -> str:
    """`kubectl kustomize` of deploy/k8s/overlays/OVERLAY, or of a kustomization directory given as a path."""
    from tests.conftest import require_tool

    kubectl = require_tool("kubectl")
    root = overlay if isinstance(overlay, Path) else K8S / "overlays" / overlay
    proc = subprocess.run([kubectl, "kustomize", str(root)],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout
