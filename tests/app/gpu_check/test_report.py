"""The report: JSON that stays valid, and markdown tables a reader can paste into docs/gpu.md."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

from app.gpu_check.plan import cpu_plan
from app.gpu_check.raw import MixedCell, RawCell, Skipped
from app.gpu_check.report import JSON_FILE, MARKDOWN_FILE, Report
from app.gpu_check.serving import HttpCell

ENVIRONMENT = {"mode": "gpu", "gpu": ["NVIDIA H200, 580.159.04, 143771 MiB"], "onnxruntime": "1.31.1",
               "onnxruntime_providers": ["CUDAExecutionProvider"], "torch": "2.11.0", "torch_cuda": "13.0",
               "python": "3.12.3", "cpu_count": 16, "started_at": "t", "commit": "abc", "tensorrt_reason": "not installed"}


def report() -> Report:
    result = Report(environment=ENVIRONMENT, plan=asdict(cpu_plan()))
    result.check("server fp16: /info", True, "a: fp16 on CUDAExecutionProvider | b")
    result.raw += [RawCell("m", "fp16", "CUDA", seq, batch, 9, 1234.5 * batch, 1.0, 0.5, 0.6, 0.7)
                   for seq in (32, 128) for batch in (1, 8)]
    result.http.append(HttpCell("m", "fp16", "CUDA", "fp16", 32, 4, 100, 2, 95.5, 3.0, 4.0, float("nan"), 2.4, 0.31))
    result.mixed.append(MixedCell("m", "fp16", "CUDA", "http", 6, 64, "arrival", 500.0, None, 0.42, 9.0))
    result.skipped.append(Skipped("raw m fp16 seq 512 batch 256", "would not fit its time box (about 9.0 s)"))
    result.phases = {"export": 20.0, "raw": 30.5}
    return result


def test_nan_is_written_as_null_and_an_unfinished_run_has_not_passed(tmp_path: Path) -> None:
    written = report()
    written.save(tmp_path)
    data = json.loads((tmp_path / JSON_FILE).read_text())
    assert data["http"][0]["p99_ms"] is None and data["passed"] is False
    assert "incomplete" in (tmp_path / MARKDOWN_FILE).read_text().splitlines()[0]
    written.finished = True
    assert written.passed
    written.check("something", False)
    assert not written.passed


def test_markdown_has_a_table_per_model_and_variant(tmp_path: Path) -> None:
    finished = report()
    finished.finished = True
    finished.save(tmp_path)
    text = (tmp_path / MARKDOWN_FILE).read_text()
    assert text.startswith("# GPU check, gpu mode: passed")
    assert "NVIDIA H200, 580.159.04, 143771 MiB; onnxruntime 1.31.1" in text and "used 50 s" in text
    assert "| 1 | 1,234 (0.50) | 1,234 (0.50) |" in text and "| 8 | 9,876 (0.50) | 9,876 (0.50) |" in text
    assert "| 4 | 95.5 (3.00 / -, 2, 31%) 2 errors |" in text
    assert "| m | fp16 | CUDA | http | 6 | 64 | arrival | 42.0% | 500 | - | 9.00 |" in text
    assert "a: fp16 on CUDAExecutionProvider \\| b" in text  # a bare pipe would break the table
    assert "- raw m fp16 seq 512 batch 256: would not fit its time box (about 9.0 s)" in text
