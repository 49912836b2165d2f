from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
import torch
import transformers
from tokenizers import Tokenizer

from model_export import parity
from model_export.errors import MissingFilesError, OutputDirectoryError, ParityError
from model_export.loading import sentence_transformers_max_length
from model_export.manifest import (
    ATTENTION_MASK,
    INPUT_IDS,
    MASK_LOGITS,
    MASK_POSITIONS,
    SENTENCE_EMBEDDING,
    read_manifest,
    sha256_file,
    verify_model_dir,
)
from model_export.pipeline import ExportOptions, export_model

SENTENCES = ["the cat sat on the [MASK] .", "a longer sentence , with [MASK] and another [MASK] word in it", "no mask here"]


def quiet(message: str) -> None:
    pass


def session(model_dir: Path, variant: str) -> ort.InferenceSession:
    return ort.InferenceSession(str(model_dir / f"model.{variant}.onnx"), providers=["CPUExecutionProvider"])


def batch(model_dir: Path, sentences: list[str]) -> dict[str, np.ndarray]:
    tokenizer = Tokenizer.from_file(str(model_dir / "tokenizer.json"))
    tokenizer.enable_padding()
    encodings = tokenizer.encode_batch(sentences)
    return {
        INPUT_IDS: np.array([e.ids for e in encodings], dtype=np.int64),
        ATTENTION_MASK: np.array([e.attention_mask for e in encodings], dtype=np.int64),
    }


def test_manifest_describes_the_checkpoint(tiny_kind: str, tiny_checkpoints, tiny_exports) -> None:
    manifest = verify_model_dir(tiny_exports[tiny_kind])
    config = transformers.AutoConfig.from_pretrained(tiny_checkpoints[tiny_kind])
    tokenizer = transformers.AutoTokenizer.from_pretrained(tiny_checkpoints[tiny_kind])
    assert manifest.arch.model_type == config.model_type
    assert manifest.arch.architecture == config.architectures[0]
    assert (manifest.arch.num_layers, manifest.arch.num_heads, manifest.arch.hidden_size, manifest.arch.vocab_size) == (
        config.num_hidden_layers, config.num_attention_heads, config.hidden_size, config.vocab_size
    )
    assert manifest.special_tokens.cls.id == tokenizer.cls_token_id
    assert manifest.special_tokens.sep.id == tokenizer.sep_token_id
    assert manifest.special_tokens.pad.id == tokenizer.pad_token_id
    assert manifest.special_tokens.mask.id == tokenizer.mask_token_id
    assert manifest.max_length == config.max_position_embeddings  # 128 < the 512 cap
    assert manifest.pooling == "mean"
    assert manifest.tasks == (["embed"] if tiny_kind.endswith("encoder") else ["embed", "fill-mask"])
    assert manifest.model_id == tiny_kind  # the directory's name by default
    assert manifest.source.kind == "local" and manifest.source.id == str(tiny_checkpoints[tiny_kind])
    assert manifest.source.weights_sha256 == sha256_file(tiny_checkpoints[tiny_kind] / "model.safetensors")
    assert set(manifest.variants) <= {"fp32", "fp16", "int8"} and "fp32" in manifest.variants
    for name, variant in manifest.variants.items():
        assert variant.file == f"model.{name}.onnx"
        assert variant.sha256 == sha256_file(tiny_exports[tiny_kind] / variant.file)
        assert variant.onnxruntime_version == ort.__version__
        assert variant.fusion_asserted
        assert variant.parity.sentences >= 16
    # A model directory holds exactly what the manifest lists, and no leftovers of the export.
    listed = {"manifest.json", "tokenizer.json"} | {variant.file for variant in manifest.variants.values()}
    assert {path.name for path in tiny_exports[tiny_kind].iterdir()} == listed


def test_tokenizer_travels_without_padding_or_truncation(tiny_exports) -> None:
    raw = json.loads((tiny_exports["distilbert-mlm"] / "tokenizer.json").read_text())
    assert raw["padding"] is None and raw["truncation"] is None


def test_graph_io_names_types_and_dynamic_axes(tiny_kind: str, tiny_exports) -> None:
    model_dir = tiny_exports[tiny_kind]
    manifest = read_manifest(model_dir)
    for name in manifest.variants:
        run = session(model_dir, name)
        assert [(i.name, i.type) for i in run.get_inputs()] == [(INPUT_IDS, "tensor(int64)"), (ATTENTION_MASK, "tensor(int64)")]
        expected = [SENTENCE_EMBEDDING] if manifest.tasks == ["embed"] else [SENTENCE_EMBEDDING, MASK_LOGITS, MASK_POSITIONS]
        assert [o.name for o in run.get_outputs()] == expected
        assert run.get_outputs()[0].type == "tensor(float)"  # fp32 I/O even for fp16
        for sentences in (SENTENCES[:1], SENTENCES):  # batch 1 and 3, different lengths
            outputs = run.run(None, batch(model_dir, sentences))
            assert outputs[0].shape == (len(sentences), manifest.arch.hidden_size)


@pytest.mark.parametrize("kind", ["distilbert-mlm", "bert-mlm"])
def test_mask_logits_only_at_mask_positions_match_pytorch(kind: str, tiny_checkpoints, tiny_exports) -> None:
    model_dir = tiny_exports[kind]
    mask_id = read_manifest(model_dir).special_tokens.mask.id
    feed = batch(model_dir, SENTENCES)
    embedding, logits, positions = session(model_dir, "fp32").run(None, feed)
    expected_positions = np.argwhere(feed[INPUT_IDS] == mask_id)
    assert len(expected_positions) == 3
    np.testing.assert_array_equal(positions, expected_positions)
    model = transformers.AutoModelForMaskedLM.from_pretrained(tiny_checkpoints[kind]).eval()
    with torch.no_grad():
        output = model(**{k: torch.from_numpy(v) for k, v in feed.items()}, output_hidden_states=True)
    full = output.logits.numpy()
    np.testing.assert_allclose(logits, full[positions[:, 0], positions[:, 1]], atol=1e-4)
    hidden = output.hidden_states[-1].numpy()
    weights = feed[ATTENTION_MASK][..., None]
    np.testing.assert_allclose(embedding, (hidden * weights).sum(1) / weights.sum(1), atol=1e-4)


def test_no_mask_gives_empty_logits(tiny_exports) -> None:
    model_dir = tiny_exports["bert-mlm"]
    _, logits, positions = session(model_dir, "fp32").run(None, batch(model_dir, ["no mask here at all"]))
    assert logits.shape == (0, read_manifest(model_dir).arch.vocab_size)
    assert positions.shape == (0, 2)


def test_cls_pooling_takes_the_first_token(tiny_checkpoints, tmp_path: Path) -> None:
    out = tmp_path / "cls"
    manifest = export_model(str(tiny_checkpoints["bert-encoder"]), out, ExportOptions(variants=("fp32",), pooling="cls"), quiet)
    assert manifest.pooling == "cls"
    feed = batch(out, SENTENCES)
    (embedding,) = session(out, "fp32").run(None, feed)
    model = transformers.AutoModel.from_pretrained(tiny_checkpoints["bert-encoder"]).eval()
    with torch.no_grad():
        hidden = model(**{k: torch.from_numpy(v) for k, v in feed.items()}).last_hidden_state.numpy()
    np.testing.assert_allclose(embedding, hidden[:, 0], atol=1e-4)


def test_variant_missing_its_gate_is_not_written(tiny_checkpoints, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setitem(parity.GATES, "fp16", parity.Gate(min_cosine=1.5))
    messages: list[str] = []
    out = tmp_path / "model"
    manifest = export_model(str(tiny_checkpoints["distilbert-mlm"]), out, ExportOptions(variants=("fp32", "fp16")), messages.append)
    assert list(manifest.variants) == ["fp32"]
    assert not (out / "model.fp16.onnx").exists()
    assert any("fp16" in note and "cosine" in note for note in manifest.notes)
    assert any("fp16" in message and "not written" in message for message in messages)


def test_no_variant_passing_fails_and_leaves_nothing(tiny_checkpoints, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setitem(parity.GATES, "fp32", parity.Gate(max_abs_diff=-1.0))
    with pytest.raises(ParityError, match="fp32"):
        export_model(str(tiny_checkpoints["bert-encoder"]), tmp_path / "model", ExportOptions(variants=("fp32",)), quiet)
    assert list(tmp_path.iterdir()) == []


def test_reexport_replaces_a_model_directory_but_not_other_data(tiny_checkpoints, tmp_path: Path) -> None:
    out = tmp_path / "model"
    options = ExportOptions(variants=("fp32",))
    export_model(str(tiny_checkpoints["bert-encoder"]), out, options, quiet)
    (out / "stale.txt").write_text("from before")
    export_model(str(tiny_checkpoints["bert-encoder"]), out, ExportOptions(variants=("fp32",), model_id="renamed"), quiet)
    assert read_manifest(out).model_id == "renamed"
    assert not (out / "stale.txt").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model"]
    precious = tmp_path / "precious"
    precious.mkdir()
    (precious / "thesis.txt").write_text("do not delete")
    with pytest.raises(OutputDirectoryError):
        export_model(str(tiny_checkpoints["bert-encoder"]), precious, options, quiet)
    assert (precious / "thesis.txt").read_text() == "do not delete"


def test_max_length_follows_sentence_transformers_unless_requested(tiny_checkpoints, tmp_path: Path) -> None:
    checkpoint = Path(shutil.copytree(tiny_checkpoints["bert-encoder"], tmp_path / "st-encoder"))
    (checkpoint / "sentence_bert_config.json").write_text(json.dumps({"max_seq_length": 64, "do_lower_case": False}))
    messages: list[str] = []
    default = export_model(str(checkpoint), tmp_path / "default", ExportOptions(variants=("fp32",)), messages.append)
    assert default.max_length == 64  # not config.json's max_position_embeddings (128)
    assert default.max_length_source == "sentence_bert_config.json max_seq_length"
    assert "max_length 64 (sentence_bert_config.json max_seq_length)" in messages
    requested = export_model(str(checkpoint), tmp_path / "requested", ExportOptions(variants=("fp32",), max_length=100), quiet)
    assert (requested.max_length, requested.max_length_source) == (100, "requested")


def test_sentence_transformers_config_without_a_usable_length(tmp_path: Path) -> None:
    assert sentence_transformers_max_length(tmp_path) is None
    config = tmp_path / "sentence_bert_config.json"
    config.write_text('{"max_seq_length": null}')
    assert sentence_transformers_max_length(tmp_path) is None
    for broken in ('{"max_seq_length": "long"}', "{not json"):
        config.write_text(broken)
        with pytest.raises(MissingFilesError, match="--max-length"):
            sentence_transformers_max_length(tmp_path)
