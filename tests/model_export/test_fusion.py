from __future__ import annotations

from pathlib import Path

import onnx
import pytest

from model_export import fusion
from model_export.errors import FusionError
from model_export.manifest import read_manifest
from model_export.pipeline import ExportOptions, export_model


def test_attention_and_layer_norms_fused(tiny_kind: str, tiny_exports) -> None:
    model_dir = tiny_exports[tiny_kind]
    manifest = read_manifest(model_dir)
    graph = onnx.load(str(model_dir / "model.fp32.onnx"))
    ops = [node.op_type for node in graph.graph.node]
    assert ops.count("Attention") == manifest.arch.num_layers
    assert ops.count("EmbedLayerNormalization") == 1
    assert ops.count("SkipLayerNormalization") >= manifest.arch.num_layers
    assert manifest.variants["fp32"].fused_ops == fusion.fused_op_counts(graph)


def test_missing_fusions_names_what_did_not_fuse() -> None:
    assert fusion.missing_fusions({"Attention": 6, "EmbedLayerNormalization": 1, "SkipLayerNormalization": 12}, 6) == []
    missing = fusion.missing_fusions({"Attention": 0, "SkipLayerNormalization": 12}, 6)
    assert missing == ["Attention 0 of 6 layers", "no EmbedLayerNormalization"]


def test_unfused_export_fails_unless_allowed(tiny_checkpoints, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(fusion, "missing_fusions", lambda counts, layers: ["Attention 0 of 2 layers"])
    source = str(tiny_checkpoints["distilbert-mlm"])
    with pytest.raises(FusionError, match="Attention 0 of 2 layers"):
        export_model(source, tmp_path / "strict", ExportOptions(variants=("fp32",)), lambda message: None)
    assert not (tmp_path / "strict").exists()
    manifest = export_model(source, tmp_path / "lax", ExportOptions(variants=("fp32",), allow_unfused=True), lambda message: None)
    assert manifest.variants["fp32"].fusion_asserted is False
    assert any("allow-unfused" in note for note in manifest.notes)
