"""The check's models: the tokenizer is bert-base-uncased's, and the checkpoints export."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from tokenizers import Tokenizer

from app.bench import load_sentences
from app.data import BERT_UNCASED_VOCAB
from app.gpu_check import models
from app.gpu_check.plan import TINY_ENCODER, TINY_MLM


def test_the_shipped_vocabulary_is_the_minilm_packages(tmp_path: Path) -> None:
    """The tokenizer built from app/data tokenizes STS-B exactly as all-MiniLM-L6-v2's own."""
    from model_export.default_model.build import minilm_dir

    assert BERT_UNCASED_VOCAB.read_bytes() == (minilm_dir() / "vocab.txt").read_bytes()
    models.write_tokenizer(tmp_path, 512)
    ours = Tokenizer.from_file(str(tmp_path / "tokenizer.json"))
    reference = json.loads((minilm_dir() / "tokenizer.json").read_text())
    reference["padding"] = reference["truncation"] = None
    theirs = Tokenizer.from_str(json.dumps(reference))
    sentences = load_sentences(None) + ["Héllo wörld, naïve café: 東京! the [MASK] sat."]
    assert [e.ids for e in ours.encode_batch(sentences)] == [e.ids for e in theirs.encode_batch(sentences)]


def test_transformers_loads_the_tokenizer_with_its_special_tokens(tmp_path: Path) -> None:
    import transformers

    models.write_tokenizer(tmp_path, 128)
    tokenizer = transformers.AutoTokenizer.from_pretrained(tmp_path)
    assert (tokenizer.cls_token_id, tokenizer.sep_token_id, tokenizer.pad_token_id, tokenizer.mask_token_id) == (101, 102, 0, 103)
    assert tokenizer.model_max_length == 128
    assert tokenizer("the [MASK] sat").input_ids == [101, 1996, 103, 2938, 102]


@pytest.mark.parametrize("spec", [TINY_MLM, TINY_ENCODER], ids=lambda spec: spec.name)
def test_checkpoints_are_seeded_and_export_both_variants(spec, tmp_path: Path) -> None:
    first = models.build_checkpoint(spec, tmp_path / "a")
    again = models.build_checkpoint(spec, tmp_path / "b")
    assert (first / "model.safetensors").read_bytes() == (again / "model.safetensors").read_bytes()
    variants = models.export(spec, first, tmp_path / "out", ("fp32", "fp16"), lambda message: None)
    assert variants == ["fp32", "fp16"]
    results = models.gate_on(first, tmp_path / "out", variants, ["CPUExecutionProvider"], "cpu")
    assert [(r.model, r.variant, r.provider, r.failures) for r in results] == [
        (spec.name, "fp32", "CPUExecutionProvider", []), (spec.name, "fp16", "CPUExecutionProvider", []),
    ]
    assert results[1].figures["embedding_min_cosine"] >= 0.999


def test_an_unknown_kind_is_refused(tmp_path: Path) -> None:
    from dataclasses import replace

    with pytest.raises(ValueError, match="unknown model kind"):
        models.build_checkpoint(replace(TINY_MLM, kind="gpt"), tmp_path)


def test_a_missing_vocabulary_is_an_error_that_names_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    missing = tmp_path / "vocab.txt"
    monkeypatch.setattr("app.data.BERT_UNCASED_VOCAB", missing)
    with pytest.raises(FileNotFoundError, match=f"{missing}.*app/data/bert_uncased/"):
        models.write_tokenizer(tmp_path, 128)


def test_fp32_gates_on_cuda_run_without_tf32_and_other_providers_are_left_alone() -> None:
    """fp32's 1e-4 gate is for exact fp32 products; TF32 (the CUDA provider's default) misses it."""
    providers = [("CUDAExecutionProvider", {"device_id": 0}), "CPUExecutionProvider"]
    assert models.without_tf32(providers) == [("CUDAExecutionProvider", {"device_id": 0, "use_tf32": False}), "CPUExecutionProvider"]
    assert models.without_tf32(["CUDAExecutionProvider"]) == [("CUDAExecutionProvider", {"use_tf32": False})]
    assert providers[0][1] == {"device_id": 0}


def test_each_gpu_variant_is_gated_like_its_kind_where_it_has_kernels() -> None:
    from model_export.gpu_variants import gate_name

    assert gate_name("fp32-unfused") == "fp32" and gate_name("fp16") == "fp16"
    assert gate_name("fp16-packed") is None  # the export, on the CPU, cannot run it
    assert gate_name("fp16-packed", provider_has_kernels=True) == "fp16"  # the GPU check's gate on CUDA
