"""make bench, shrunk: it measures both sides on the tiny model and writes the JSON it promises."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from app import bench


def test_sentences_are_mixed_length_english() -> None:
    sentences = bench.load_sentences(200)
    lengths = [len(sentence.split()) for sentence in sentences]
    assert len(sentences) == 200 and min(lengths) < 8 < max(lengths)
    assert all("[MASK]" in text for text in bench.as_task(sentences[:5], "fill-mask", "[MASK]"))


def test_bench_runs_end_to_end(tiny_mlm_model_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str],
                               monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DISTILSERVE_PROVIDERS", "cpu")
    monkeypatch.setenv("DISTILSERVE_INTRA_OP_THREADS", "1")
    out = tmp_path / "bench.json"
    code = bench.main([str(tiny_mlm_model_dir), "--concurrency", "1,4", "--duration", "0.6", "--sentences", "100",
                       "--task", "fill-mask", "--json", str(out)])
    assert code == 0
    report = json.loads(out.read_text())
    modes = [(row["mode"], row["concurrency"]) for row in report["rows"]]
    assert modes == [("raw", 1), ("raw", 32), ("http", 1), ("http", 4)]
    assert all(row["requests"] > 0 and row["throughput"] > 0 for row in report["rows"])
    assert all(0.0 <= row["padding_waste"] < 1.0 for row in report["rows"])
    assert report["summary"]["throughput_ratio"] > 0
    printed = capsys.readouterr().out
    assert "pad waste" in printed and "target >= 0.85" in printed


def test_missing_sentences_stop_the_bench_and_name_the_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    missing = tmp_path / "stsb-en-test.csv"
    monkeypatch.setattr("app.data.STSB_TEST_CSV", missing)
    with pytest.raises(SystemExit, match=re.escape(str(missing))):
        bench.load_sentences(10)


def test_a_server_not_ready_in_time_is_an_error_and_is_stopped_at_once(tiny_mlm_model_dir: Path) -> None:
    import time

    started = time.monotonic()
    with pytest.raises(bench.ServerError, match="not ready after 0s"), bench.running_server([tiny_mlm_model_dir], ready_timeout=0.2):
        pass
    assert time.monotonic() - started < 10  # killed, not left to finish its warm-up and drain
