"""train -> export -> serve: the distilled directory goes through `python -m model_export` as it is
(parity gates included) and the server's /fill-mask equals transformers' pipeline on it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from app.server import create_app
from app.settings import Settings
from tests.app.conftest import assert_same_answer, serving
from tests.model_export.distill.conftest import CORPUS


def run_module(repo_root: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    result = subprocess.run([sys.executable, "-m", *args], cwd=repo_root, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    return result


@pytest.mark.slow
def test_a_distilled_student_exports_and_serves_fill_mask(repo_root: Path, tmp_path: Path, bert_teacher: Path) -> None:
    student, export = tmp_path / "student", tmp_path / "export"
    distilled = run_module(
        repo_root, "model_export.distill", str(bert_teacher), str(CORPUS), "--out", str(student), "--max-steps", "10",
        "--batch-tokens", "512", "--heldout-percent", "15", "--log-every", "5", "--threads", "1",
    )
    assert "student top-1" in distilled.stdout and "most-frequent-words baseline" in distilled.stdout
    assert "step 10/10" in distilled.stderr and "tokens/s" in distilled.stderr
    summary = json.loads((student / "distill_eval.json").read_text())
    assert set(summary) >= {"student", "student_at_start", "teacher", "baseline_most_frequent"}
    assert json.loads((student / "config.json").read_text())["architectures"] == ["DistilBertForMaskedLM"]
    assert not (tmp_path / "student.run").exists()

    run_module(repo_root, "model_export", str(student), "--out", str(export), "--variants", "fp32")
    manifest = json.loads((export / "manifest.json").read_text())
    assert manifest["arch"]["architecture"] == "DistilBertForMaskedLM" and manifest["arch"]["num_layers"] == 2
    assert manifest["tasks"] == ["embed", "fill-mask"]

    import transformers

    pipeline = transformers.pipeline("fill-mask", model=str(student), tokenizer=str(student))
    settings = Settings(model_dir=[export], providers=["cpu"], intra_op_threads=1)
    inputs = ["The cow eats [MASK] every morning.", "The town of Ashton stands on the river [MASK]."]
    with serving(create_app(settings)) as client:
        for text in inputs:
            response = client.post("/fill-mask", json={"inputs": text, "parameters": {"top_k": 5}})
            assert response.status_code == 200, response.text
            assert_same_answer(response.json(), pipeline(text, top_k=5), text)
