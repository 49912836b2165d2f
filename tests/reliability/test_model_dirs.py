"""Tampered and inconsistent model directories, served by real `python -m app` processes.

Each is refused at start-up in one line (`cannot start: ...`, exit 2) that names the problem, instead
of being served, failing its warm-up forever, or dying with an onnxruntime traceback.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from model_export.manifest import MANIFEST_FILE, sha256_file
from tests.clients.live_server import REPO_ROOT, free_port, live_server

REFUSAL_TIMEOUT_S = 60  # a refusal takes seconds; a directory that is served instead runs until this


def refusal(model_dir: Path) -> str:
    """Start a server on `model_dir`; it must exit 2 with exactly one line of output, which is returned."""
    command = [
        sys.executable, "-m", "app", "--model-dir", str(model_dir), "--providers", "cpu", "--intra-op-threads", "1",
        "--log-level", "warning", "--host", "127.0.0.1", "--port", str(free_port()),
    ]
    try:
        result = subprocess.run(
            command, cwd=REPO_ROOT, capture_output=True, text=True, timeout=REFUSAL_TIMEOUT_S,
            env={name: value for name, value in os.environ.items() if not name.startswith("DISTILSERVE_")},
        )
    except subprocess.TimeoutExpired as served:
        output = served.stderr.decode(errors="replace") if isinstance(served.stderr, bytes) else served.stderr
        raise AssertionError(f"still running after {REFUSAL_TIMEOUT_S}s instead of refusing:\n{output}") from None
    lines = [line for line in (result.stdout + result.stderr).splitlines() if line.strip()]
    assert result.returncode == 2, "\n".join(lines)
    assert len(lines) == 1, "\n".join(lines)
    assert "cannot start: " in lines[0]
    return lines[0]


def edit_manifest(directory: Path, edit: Callable[[dict[str, Any]], None]) -> None:
    path = directory / MANIFEST_FILE
    manifest = json.loads(path.read_text())
    edit(manifest)
    path.write_text(json.dumps(manifest))


@pytest.fixture
def model(tiny_mlm_model_dir: Path, tmp_path: Path) -> Path:
    """A copy of the tiny masked-LM export to tamper with; `tmp_path` (outside it) holds what it must not reach."""
    return Path(shutil.copytree(tiny_mlm_model_dir, tmp_path / "model"))


def outside_graph(model: Path) -> Path:
    """The model's own graph, copied beside the directory: its checksum still matches the manifest."""
    outside = model.parent / "outside.onnx"
    shutil.copyfile(model / "model.fp32.onnx", outside)
    return outside


def test_a_dot_dot_path_is_refused(model: Path) -> None:
    outside_graph(model)
    edit_manifest(model, lambda m: m["variants"]["fp32"].update(file="../outside.onnx"))
    line = refusal(model)
    assert "'../outside.onnx'" in line and "outside the model directory" in line


def test_an_absolute_path_is_refused(model: Path) -> None:
    outside = outside_graph(model)
    edit_manifest(model, lambda m: m["variants"]["fp32"].update(file=str(outside)))
    line = refusal(model)
    assert str(outside) in line and "outside the model directory" in line


def test_a_symlink_leading_out_is_refused(model: Path) -> None:
    outside = outside_graph(model)
    (model / "model.fp32.onnx").unlink()
    (model / "model.fp32.onnx").symlink_to(outside)
    line = refusal(model)
    assert "'model.fp32.onnx'" in line and "outside the model directory" in line


def test_a_corrupted_graph_with_an_updated_checksum_is_refused(model: Path) -> None:
    graph = model / "model.fp32.onnx"
    graph.write_bytes(graph.read_bytes()[: graph.stat().st_size // 2])
    edit_manifest(model, lambda m: m["variants"]["fp32"].update(sha256=sha256_file(graph)))
    line = refusal(model)
    assert "onnxruntime cannot load model.fp32.onnx" in line and "Protobuf parsing failed" in line


def test_a_hidden_size_the_graph_does_not_have_is_refused(model: Path) -> None:
    edit_manifest(model, lambda m: m["arch"].update(hidden_size=64))
    assert "sentence_embedding is 32 wide, the manifest's arch.hidden_size is 64" in refusal(model)


def test_a_mask_id_the_graph_does_not_mark_is_refused(model: Path) -> None:
    edit_manifest(model, lambda m: m["special_tokens"]["mask"].update(id=104))
    assert "no mask_logits row for the manifest's mask token id 104" in refusal(model)


def test_mask_outputs_without_fill_mask_are_refused(model: Path) -> None:
    edit_manifest(model, lambda m: m.update(tasks=["embed"]))
    assert "the graph has mask outputs, but the manifest's tasks do not list fill-mask" in refusal(model)


def test_fill_mask_without_mask_outputs_is_refused(tiny_encoder_model_dir: Path, tmp_path: Path) -> None:
    encoder = Path(shutil.copytree(tiny_encoder_model_dir, tmp_path / "model"))
    edit_manifest(encoder, lambda m: m.update(tasks=["embed", "fill-mask"]))
    assert "tasks list fill-mask, but the graph has no mask_logits, mask_positions" in refusal(encoder)


def test_a_max_length_beyond_the_position_table_is_refused(model: Path) -> None:
    edit_manifest(model, lambda m: m.update(max_length=100000))
    line = refusal(model)
    assert "max_length 100000 exceeds the position table" in line and "max_batch_tokens" not in line


def test_a_bert_model_saved_without_pooler_exports_and_serves(tmp_path: Path) -> None:
    from model_export.pipeline import ExportOptions, export_model
    from tests.tiny_models import build_tiny_checkpoint

    checkpoint = build_tiny_checkpoint(tmp_path / "checkpoint", "bert-encoder", pooler=False)
    exported = export_model(str(checkpoint), tmp_path / "export", ExportOptions(variants=("fp32",)), progress=lambda _: None)
    assert exported.tasks == ["embed"]
    with live_server(tmp_path / "export", tmp_path, {"DISTILSERVE_PROVIDERS": "cpu", "DISTILSERVE_INTRA_OP_THREADS": "1"}) as server:
        response = httpx.post(f"{server.url}/embed", json={"inputs": "a sentence"}, timeout=10)
    assert response.status_code == 200 and len(response.json()[0]) == 32
