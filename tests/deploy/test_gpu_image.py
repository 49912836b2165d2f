"""The `gpu` image, built for real. No GPU is present here, so this proves what can be proved without
one: the CUDA execution provider's libraries all resolve except the driver's libcuda (which the
NVIDIA Container Toolkit mounts), and the server's behaviour when CUDA is unusable."""

from __future__ import annotations

import pytest

from tests.deploy import containers

pytestmark = pytest.mark.container

CUDA_EP = "/opt/venv/lib/python3.11/site-packages/onnxruntime/capi/libonnxruntime_providers_cuda.so"


def test_cuda_provider_libraries_resolve(gpu_image):
    proc = containers.run(["podman", "run", "--rm", "--entrypoint", "sh", gpu_image, "-c",
                           f"ldd {CUDA_EP}; for lib in /opt/cuda-libs/libcudnn.so.9 /opt/cuda-libs/libcufft.so.*; "
                           "do test -e $lib || echo $lib missing; done"])
    missing = sorted({line.split()[0] for line in proc.stdout.splitlines() if "not found" in line or "missing" in line})
    assert missing == ["libcuda.so.1"], proc.stdout
    for lib in ("libcudart.so", "libcublas.so", "libcurand.so"):
        assert f"{lib}" in proc.stdout and "/opt/cuda-libs/" in proc.stdout


def test_gpu_image_has_onnxruntime_gpu_and_no_torch(gpu_image):
    script = ("import importlib.util, onnxruntime as ort; "
              "print(ort.get_available_providers()); print(importlib.util.find_spec('torch'))")
    out = containers.run(["podman", "run", "--rm", gpu_image, "python", "-c", script]).stdout.splitlines()
    assert "CUDAExecutionProvider" in out[0]
    assert out[1] == "None"


def test_strict_providers_refuses_to_start_without_a_gpu(gpu_image):
    proc = containers.run(["podman", "run", "--rm", "--read-only", "--tmpfs", "/tmp",
                           "-e", "DISTILSERVE_STRICT_PROVIDERS=true", gpu_image], check=False, timeout=180)
    assert proc.returncode != 0
    assert "strict_providers" in proc.stdout + proc.stderr


def test_without_a_gpu_it_serves_on_cpu_and_says_so(gpu_image):
    port = containers.free_port()
    name = f"distilserve-gpu-{port}"
    containers.run(["podman", "run", "-d", "--name", name, "--read-only", "--tmpfs", "/tmp",
                    "-p", f"127.0.0.1:{port}:8000", gpu_image])
    try:
        base_url = f"http://127.0.0.1:{port}"
        containers.wait_until_ready(base_url, logs=lambda: containers.run(["podman", "logs", name], check=False).stderr)
        _, info = containers.http("GET", f"{base_url}/info")
        assert info["requested_providers"][0] == "CUDAExecutionProvider"
        assert info["providers"] == ["CPUExecutionProvider"]
        status, body = containers.http("POST", f"{base_url}/embed", {"inputs": "no gpu here"})
        assert status == 200 and len(body[0]) == 384
    finally:
        containers.run(["podman", "rm", "-f", "-t", "0", name], check=False)
