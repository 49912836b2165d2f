"""make bench, shrunk: the shipped text set, the report's arithmetic, and a whole run on the tiny model."""

from __future__ import annotations

import json
import re
import time
from pathlib import Path

import numpy as np
import pytest

from app import bench
from app.bench.http import batch_counters
from app.bench.report import Section, summarize
from app.bench.rows import Row

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def test_sentences_are_mixed_length_english() -> None:
    sentences = bench.load_sentences(200)
    lengths = [len(sentence.split()) for sentence in sentences]
    assert len(sentences) == 200 and min(lengths) < 8 < max(lengths)
    assert all("[MASK]" in text for text in bench.as_task(sentences[:5], "fill-mask", "[MASK]"))


def test_the_bench_texts_have_the_length_mix_of_real_traffic() -> None:
    """Median about 25 all-MiniLM tokens, p90 about 65, a tail to 250, counted here afresh."""
    from tokenizers.implementations import BertWordPieceTokenizer

    from app.data import bert_uncased_vocab

    texts = bench.load_bench_texts()
    tokenizer = BertWordPieceTokenizer.from_file(str(bert_uncased_vocab()), lowercase=True)
    lengths = np.array([len(encoding.ids) for encoding in tokenizer.encode_batch(texts)])
    assert len(texts) == 1200 and len(set(texts)) == len(texts)
    assert 22 <= np.median(lengths) <= 30 and 55 <= np.percentile(lengths, 90) <= 75
    assert 200 <= lengths.max() <= 250 and lengths.min() >= 6
    assert bench.load_bench_texts(10) == texts[:10]


def test_the_committed_text_set_is_what_the_builder_makes_from_the_repository(tmp_path: Path) -> None:
    """The provenance holds: rebuilding from STS-B and the Austen slice gives the shipped file byte for byte."""
    from app.bench.build_texts import build_from_repository
    from app.data import BENCH_TEXTS

    from model_export.default_model import HELDOUT_SLICE

    build_from_repository(tmp_path / "texts.jsonl")
    assert (tmp_path / "texts.jsonl").read_bytes() == BENCH_TEXTS.read_bytes()
    # Every text is verbatim from its source: an STS-B sentence, or a run within one Austen paragraph.
    austen = "\n".join(" ".join(line.split()) for line in HELDOUT_SLICE.read_text(encoding="utf-8").splitlines())
    stsb = set(bench.load_sentences(None))
    for entry in map(json.loads, BENCH_TEXTS.read_text(encoding="utf-8").splitlines()):
        assert entry["text"] in (stsb if entry["source"] == "stsb" else austen), entry


@pytest.mark.parametrize(("attribute", "loader"), [("STSB_TEST_CSV", "load_sentences"), ("BENCH_TEXTS", "load_bench_texts")])
def test_a_missing_text_file_stops_the_bench_and_names_it(
    attribute: str, loader: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    missing = tmp_path / "gone.txt"
    monkeypatch.setattr(f"app.data.{attribute}", missing)
    with pytest.raises(SystemExit, match=re.escape(str(missing))):
        getattr(bench, loader)(10)


def test_batch_counters_read_only_the_named_models_samples() -> None:
    page = "\n".join([
        "# HELP distilserve_batch_size Inputs per batch.",
        'distilserve_batch_size_sum{model="a"} 10.0',
        'distilserve_batch_size_sum{model="b"} 32.0',
        'distilserve_batch_size_count{model="a"} 5.0',
        'distilserve_batch_real_tokens_total{model="b"} 7.0',
    ])
    assert batch_counters(page, "a")["distilserve_batch_size_sum"] == 10.0
    assert batch_counters(page, "a")["distilserve_batch_real_tokens_total"] == 0.0
    assert batch_counters(page)["distilserve_batch_size_sum"] == 42.0


def _row(mode: str, concurrency: int, throughput: float, padding: float = 0.1, p50: float = 10.0) -> Row:
    return Row(mode, concurrency, 10, throughput, p50, p50, p50, 4.0, padding)


def test_the_summary_holds_each_figure_against_its_target() -> None:
    section = Section("embed", "m", "fp32", _row("ceiling", 32, 200.0, 0.04), [
        _row("raw", 1, 100.0, 0.0, p50=8.0), _row("sentence-transformers", 32, 100.0),
        _row("http", 1, 90.0, 0.0, p50=12.0), _row("http", 8, 180.0, 0.10), _row("http", 32, 170.0, 0.20),
    ])
    summary = summarize([section])
    assert summary["min_ratio_from_c8"] == pytest.approx(0.85)
    assert summary["max_padding_waste_from_c8"] == pytest.approx(0.20)
    assert summary["throughput_never_falls"] is False
    assert summary["p50_c1_minus_raw_ms"] == pytest.approx(4.0)
    assert summary["sentence_transformers_ratio"] == pytest.approx(0.5)


def test_bench_runs_end_to_end(tiny_mlm_model_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str],
                               monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DISTILSERVE_PROVIDERS", "cpu")
    monkeypatch.setenv("DISTILSERVE_INTRA_OP_THREADS", "1")
    out = tmp_path / "results" / "bench.json"
    code = bench.main([str(tiny_mlm_model_dir), "--quick", "--duration", "0.3", "--texts", "96", "--concurrency", "1,4",
                       "--request-sentences", "8", "--request-concurrency", "2", "--fill-mask-concurrency", "2",
                       "--json", str(out)])
    assert code == 0
    report = json.loads(out.read_text())
    assert set(report) == {"environment", "texts", "models", "ceilings", "rows", "skipped", "summary"}
    assert report["skipped"] == {}
    rows = report["rows"]
    assert [(row["task"], row["mode"], row["concurrency"], row["sentences_per_request"]) for row in rows] == [
        ("embed", "ceiling", 32, 1), ("embed", "raw", 1, 1), ("embed", "raw", 32, 1),
        ("embed", "sentence-transformers", 32, 1), ("embed", "http", 1, 1), ("embed", "http", 4, 1),
        ("embed", "http", 2, 8),
        ("fill-mask", "ceiling", 32, 1), ("fill-mask", "fill-mask-pipeline", 1, 1), ("fill-mask", "http", 2, 1),
    ]
    for row in rows:
        ceiling = report["ceilings"][row["task"]]["throughput"]
        assert row["requests"] > 0 and row["throughput"] > 0 and row["errors"] == 0
        assert row["ratio_to_ceiling"] == pytest.approx(row["throughput"] / ceiling)
        if row["mode"] in ("http", "raw", "ceiling"):
            assert 0.0 <= row["padding_waste"] < 1.0
    embed_ceiling, arrival = rows[0], rows[2]
    assert embed_ceiling["ratio_to_ceiling"] == 1.0
    assert embed_ceiling["padding_waste"] < arrival["padding_waste"]  # sorting is what makes it the ceiling
    assert report["texts"]["count"] == 96 and report["environment"]["quick"] is True
    assert report["summary"]["fill_mask_http_over_pipeline"] > 0 and report["summary"]["min_ratio_from_c8"] is None
    assert out.with_suffix(".png").read_bytes().startswith(PNG_SIGNATURE)
    printed = capsys.readouterr().out
    assert "x ceil" in printed and "target >= 0.85" in printed and str(out.with_suffix(".png")) in printed


def test_a_server_not_ready_in_time_is_an_error_and_is_stopped_at_once(tiny_mlm_model_dir: Path) -> None:
    started = time.monotonic()
    with pytest.raises(bench.ServerError, match="not ready after 0s"), bench.running_server([tiny_mlm_model_dir], ready_timeout=0.2):
        pass
    assert time.monotonic() - started < 10  # killed, not left to finish its warm-up and drain


FAKE_INFINITY = '''#!{python}
"""Stands in for `infinity_emb v2`: records its arguments, answers /health and OpenAI-shaped /embeddings."""
import json, sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

args = sys.argv[1:]
open({record!r}, "w").write(json.dumps(args))


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def reply(self, status, payload):
        body = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):
        self.reply(200 if self.path == "/health" else 404, {{}})

    def do_POST(self):
        request = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        ok = self.path == "/embeddings" and request["model"] == "bench" and isinstance(request["input"], list)
        self.reply(200 if ok else 400, {{"data": [{{"embedding": [0.0]}} for _ in request.get("input", [])]}})

    def log_message(self, *args):
        pass


ThreadingHTTPServer(("127.0.0.1", int(args[args.index("--port") + 1])), Handler).serve_forever()
'''


def test_infinity_is_driven_with_its_own_cli_and_openai_bodies(tmp_path: Path) -> None:
    import sys

    from app.bench.peers import find_infinity, infinity_rows

    record = tmp_path / "argv.json"
    executable = tmp_path / "infinity_emb"
    executable.write_text(FAKE_INFINITY.format(python=sys.executable, record=str(record)))
    executable.chmod(0o755)
    checkpoint = tmp_path / "checkpoint"
    rows = infinity_rows(find_infinity(str(executable)), checkpoint, ["one", "two", "three", "four"], [1, 2], 0.3,
                         request_sentences=2, request_concurrency=2, threads=1)
    assert [(row.mode, row.concurrency, row.sentences_per_request) for row in rows] == [
        ("infinity", 1, 1), ("infinity", 2, 1), ("infinity", 2, 2)]
    assert all(row.requests > 0 and row.errors == 0 for row in rows)
    argv = json.loads(record.read_text())
    assert argv[:3] == ["v2", "--model-id", str(checkpoint)] and argv[argv.index("--engine") + 1] == "torch"
    with pytest.raises(SystemExit, match="not an executable"):
        find_infinity(str(tmp_path / "absent"))


def test_an_unusable_infinity_stops_the_bench_before_it_measures(tiny_mlm_model_dir: Path, tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    def measured(*args: object, **kwargs: object) -> None:
        raise AssertionError("measured before checking --infinity")

    monkeypatch.setattr("app.bench.inprocess.open_served", measured)
    with pytest.raises(SystemExit, match="not an executable"):
        bench.main([str(tiny_mlm_model_dir), "--quick", "--infinity", str(tmp_path / "absent")])
