"""Static checks of the Dockerfiles: hadolint, and the promises a reader relies on."""

from __future__ import annotations

import re
import subprocess

import pytest

from tests.conftest import require_tool
from tests.deploy.containers import REPO

pytestmark = pytest.mark.container

DOCKERFILES = [REPO / "Dockerfile", REPO / "deploy" / "podman" / "prometheus.Containerfile"]


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.name)
def test_hadolint_passes(dockerfile):
    hadolint = require_tool("hadolint")
    proc = subprocess.run([hadolint, str(dockerfile)], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def _stages(text: str) -> dict[str, str]:
    """Stage name -> its instructions."""
    parts = re.split(r"^FROM\s+", text, flags=re.M)[1:]
    stages = {}
    for part in parts:
        header, _, body = part.partition("\n")
        stages[header.split()[-1]] = body
    return stages


def test_runtime_targets_have_no_torch_and_run_unprivileged():
    text = (REPO / "Dockerfile").read_text()
    stages = _stages(text)
    assert {"export", "cpu", "gpu", "runtime"} <= stages.keys()
    assert list(stages)[-1] == "cpu", "cpu is the default target"
    for name in ("runtime", "deps-cpu", "deps-gpu", "source", "cpu", "gpu"):
        assert "torch" not in stages[name].replace("onnxruntime", ""), f"stage {name} mentions torch"
    runtime = stages["runtime"]
    assert re.search(r"^USER 10001", runtime, re.M)
    # No --model-dir flag: it would win over DISTILSERVE_MODEL_DIR set by compose or a ConfigMap.
    assert re.search(r'^CMD \["python", "-m", "app", "--host", "0.0.0.0"', runtime, re.M)
    assert re.search(r"^\s*DISTILSERVE_MODEL_DIR=/models/default", runtime, re.M)
    assert "HEALTHCHECK" in runtime
    assert text.index("ARG BASE_IMAGE") < text.index("FROM ${BASE_IMAGE}")
