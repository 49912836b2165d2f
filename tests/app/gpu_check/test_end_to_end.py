"""`python -m app.gpu_check` in its CPU mode, end to end as CI runs it: exports, gates, the real server
on two models, the grid, and both reports."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from app.gpu_check.plan import cpu_plan, served_variants

REPO = Path(__file__).resolve().parents[3]


def run_check(*args: str, env: dict[str, str] | None = None, timeout: float = 180) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "app.gpu_check", *args], cwd=REPO, env=dict(os.environ, **(env or {})),
        capture_output=True, text=True, timeout=timeout,
    )


@pytest.fixture(scope="module")
def cpu_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[subprocess.CompletedProcess[str], Path, float, Path]:
    out = tmp_path_factory.mktemp("gpu-check")
    # A stand-in for NVIDIA's wheels on PYTHONPATH: the servers must get its folder on LD_LIBRARY_PATH.
    site = tmp_path_factory.mktemp("site")
    (site / "nvidia" / "cu13" / "lib").mkdir(parents=True)
    (site / "nvidia" / "cu13" / "lib" / "libcublas.so.13").touch()
    pythonpath = os.pathsep.join(filter(None, [str(site), os.environ.get("PYTHONPATH")]))
    started = time.monotonic()
    result = run_check("--mode", "cpu", "--out", str(out), env={"PYTHONPATH": pythonpath})
    return result, out, time.monotonic() - started, site


def test_the_cpu_mode_passes_within_its_budget(cpu_run) -> None:
    result, out, took, _ = cpu_run
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert sorted(path.name for path in out.iterdir()) == ["gpu-check.json", "gpu-check.md", "servers.log"]
    report = json.loads((out / "gpu-check.json").read_text())
    assert report["passed"] and report["finished"]
    assert report["environment"]["mode"] == "cpu" and sum(report["phases"].values()) <= cpu_plan().budget_s
    assert took < 90  # the budget plus interpreter start-up and the servers' stop


def test_every_check_the_gpu_run_makes_ran_here(cpu_run) -> None:
    report = json.loads((cpu_run[1] / "gpu-check.json").read_text())
    names = [check["name"] for check in report["checks"]]
    models, variants = ("tiny-distilbert-mlm", "tiny-bert-encoder"), ("fp32", "fp16")
    assert names[0].startswith("preflight")
    for model in models:
        assert f"export {model}" in names
        assert f"parity fp32-unfused on CPUExecutionProvider vs torch on cpu: {model}" in names
        for variant in variants:
            assert f"parity {variant} on CPUExecutionProvider vs torch on cpu: {model}" in names
            assert f"placement {model} {variant}: no model tensor leaves CPUExecutionProvider" in names
    # The packed graph is exported (its structure is the export's to check) but has no CPU kernels.
    skipped = {s["what"]: s["reason"] for s in report["skipped"]}
    for model in models:
        for what in ("parity", "raw session"):
            assert "needs CUDA" in skipped[f"{model} fp16-packed: {what}"]
    for variant in ("fp32", "fp16"):
        assert f"server {variant} on CPUExecutionProvider: /info providers, variant, IO binding" in names
        assert f"server {variant} on CPUExecutionProvider: every response 200" in names
    servers = {server["label"]: server for server in report["servers"]}
    assert {model["model_id"]: model["providers"] for model in servers["fp16 on CPUExecutionProvider"]["info"]["models"]} == {
        model: ["CPUExecutionProvider"] for model in models
    }


def test_the_grid_is_measured_for_each_model_and_variant(cpu_run) -> None:
    report = json.loads((cpu_run[1] / "gpu-check.json").read_text())
    plan = report["plan"]
    raw = {(c["model"], c["variant"], c["seq"], c["batch"]) for c in report["raw"]}
    http = {(c["model"], c["variant"], c["seq"], c["concurrency"]) for c in report["http"]}
    skipped = [s["what"] for s in report["skipped"]]
    expected = len(plan["models"]) * len(served_variants(cpu_plan(), plan["variants"])) * len(plan["seqs"])
    assert len(raw) + sum(s.startswith("raw") and "mixed" not in s for s in skipped) == expected * len(plan["batches"])
    assert len(http) + sum(s.startswith("http") and "mixed" not in s for s in skipped) == expected * len(plan["concurrencies"])
    assert len(raw) >= expected and len(http) >= expected  # at least a cell per model, variant and length
    assert all(c["sequences_per_s"] > 0 and c["p50_ms"] > 0 for c in report["raw"] + report["http"])
    assert all(c["errors"] == 0 and c["requests"] > 0 for c in report["http"])
    assert all(0 < c["client_cpu"] <= 1.5 for c in report["http"])
    mixed = {(c["path"], c["order"]) for c in report["mixed"]}
    assert mixed == {("raw", "arrival"), ("raw", "by length"), ("http", "arrival")}
    assert all(0.0 <= c["padding_waste"] < 1.0 for c in report["mixed"])


def test_the_markdown_holds_the_tables(cpu_run) -> None:
    text = (cpu_run[1] / "gpu-check.md").read_text()
    assert text.startswith("# GPU check, cpu mode: passed")
    for heading in ("## Checks", "## Raw session", "## HTTP, one sequence per request", "## Padding waste on mixed lengths", "## Skipped"):
        assert heading in text
    assert "### tiny-distilbert-mlm, fp16 on CPUExecutionProvider" in text
    assert "| batch | seq 32 | seq 128 |" in text and "| clients | seq 32 | seq 128 |" in text


def test_servers_get_the_cuda_libraries_on_their_loader_path(cpu_run) -> None:
    log = (cpu_run[1] / "servers.log").read_text()
    assert f"LD_LIBRARY_PATH={cpu_run[3] / 'nvidia' / 'cu13' / 'lib'}" in log
    assert "DISTILSERVE_VARIANT=fp16" in log and "DISTILSERVE_STRICT_PROVIDERS=true" in log


def test_asking_for_the_gpu_mode_where_there_is_none_stops_at_once(tmp_path: Path) -> None:
    import onnxruntime

    if "CUDAExecutionProvider" in onnxruntime.get_available_providers():
        pytest.skip("this host has onnxruntime-gpu")
    result = run_check("--mode", "gpu", "--out", str(tmp_path / "out"), timeout=60)
    assert result.returncode == 2
    assert "the GPU mode was asked for, but onnxruntime has no CUDA provider" in result.stderr
    assert not (tmp_path / "out").exists()


def test_the_parent_process_needs_no_web_framework() -> None:
    """On the GPU machine fastapi and uvicorn arrive only for the server: the check itself must not need them."""
    code = (
        "import sys, app.gpu_check.__main__, app.gpu_check.serving, app.gpu_check.raw, app.gpu_check.models, "
        "app.gpu_check.host, app.gpu_check.report, app.gpu_check.inputs, app.bench, app.model_config, app.providers, "
        "model_export.pipeline, model_export.loading, model_export.parity; "
        "print(sorted({m.split('.')[0] for m in sys.modules} & {'fastapi', 'starlette', 'uvicorn'}))"
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


def test_a_failed_preflight_stops_before_the_exports_and_says_why(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from app.gpu_check import __main__ as check
    from app.gpu_check import host

    monkeypatch.setattr(host, "preflight", lambda providers, env: {"active": [], "error": "libcublasLt.so.13: cannot open"})
    assert check.main(["--mode", "cpu", "--out", str(tmp_path)]) == 1
    report = json.loads((tmp_path / "gpu-check.json").read_text())
    assert [(c["name"].split(":")[0], c["passed"]) for c in report["checks"]] == [("preflight", False), ("time", True)]
    assert "libcublasLt.so.13" in report["checks"][0]["detail"]
    assert list(report["phases"]) == ["preflight"] and report["raw"] == [] and not report["passed"]
    assert (tmp_path / "gpu-check.md").read_text().startswith("# GPU check, cpu mode: failed")
