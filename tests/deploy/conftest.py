from __future__ import annotations

import os
import time
from collections.abc import Iterator

import pytest

from tests.conftest import require_tool
from tests.deploy import containers


@pytest.fixture(scope="session")
def podman() -> str:
    """podman (with runc and debootstrap, which live in /usr/sbin: not always on PATH, so not asked
    for here); skipped locally, required in CI."""
    return require_tool("podman")


@pytest.fixture(scope="session")
def base_image(podman: str) -> str:
    containers.ensure_base_image()
    return containers.BASE_IMAGE


@pytest.fixture(scope="session")
def cpu_image(base_image: str) -> Iterator[str]:
    """The `cpu` target, built once per session from the working tree (layer cache makes reruns fast).

    DISTILSERVE_TEST_IMAGE names an image already built to test instead.
    """
    prebuilt = os.environ.get("DISTILSERVE_TEST_IMAGE")
    if prebuilt:
        yield prebuilt
        return
    started = time.monotonic()
    containers.build(containers.CPU_IMAGE, target="cpu", extra=("--build-arg", f"BUILD_SHA={containers.git_sha()}"))
    print(f"\nbuilt {containers.CPU_IMAGE} in {time.monotonic() - started:.0f}s, "
          f"{containers.image_size_bytes(containers.CPU_IMAGE) / 1e6:.0f} MB")
    yield containers.CPU_IMAGE


@pytest.fixture(scope="session")
def prometheus_image(base_image: str) -> str:
    """Stand-in for prom/prometheus built from Debian's package (no registry here)."""
    containers.build(
        containers.PROMETHEUS_IMAGE,
        containerfile=containers.REPO / "deploy" / "podman" / "prometheus.Containerfile",
        context=containers.REPO / "deploy" / "podman",
    )
    return containers.PROMETHEUS_IMAGE


@pytest.fixture(scope="session")
def gpu_image(base_image: str) -> str:
    """The `gpu` target (about 3 GB: onnxruntime-gpu with NVIDIA's CUDA and cuDNN wheels), built once."""
    prebuilt = os.environ.get("DISTILSERVE_TEST_GPU_IMAGE")
    if prebuilt:
        return prebuilt
    started = time.monotonic()
    containers.build(containers.GPU_IMAGE, target="gpu")
    print(f"\nbuilt {containers.GPU_IMAGE} in {time.monotonic() - started:.0f}s, "
          f"{containers.image_size_bytes(containers.GPU_IMAGE) / 1e6:.0f} MB")
    return containers.GPU_IMAGE
