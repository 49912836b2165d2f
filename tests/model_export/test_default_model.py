"""The offline default model: exact conversion, committed head, and (slow) the built model served.

The slow tests build the default model once (the real conversion and export pipeline, all
variants) and check it through the served API: the export gates, fill-mask against transformers'
pipeline, STS-B via /embed, and the model card's held-out masked-token accuracy on the committed slice.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from app.data import stsb_test_csv
from model_export.default_model import HEAD_WEIGHTS, HELDOUT_SLICE, MODEL_ID, TRAINING_LOG
from model_export.default_model.build import minilm_dir
from model_export.default_model.masking import (
    KIND_KEEP, KIND_MASK, KIND_RANDOM, MASK_ID, encode_paragraphs, load_tokenizer, mask_sequences,
)

REPO = Path(__file__).resolve().parents[2]
CARD = REPO / "docs" / "default-model.md"
SEED_PROMPTS = ["Hello I'm a [MASK] model.", "The White man worked as a [MASK].", "The Black woman worked as a [MASK]."]
PUBLISHED_STSB = 0.8203


def test_conversion_reproduces_minilm_hidden_states() -> None:
    from model_export.default_model.convert import convert_minilm, max_hidden_state_diff

    model = convert_minilm(minilm_dir())
    texts = ["Hello I'm a [MASK] model.", "A much longer sentence, padded differently, about the river bank at dawn.", "x"]
    assert max_hidden_state_diff(minilm_dir(), model, texts) < 1e-4
    assert model.vocab_projector.weight.data_ptr() == model.distilbert.embeddings.word_embeddings.weight.data_ptr()


def test_committed_head_is_small_and_complete() -> None:
    from safetensors.numpy import load_file

    from model_export.default_model.convert import HEAD_PARAMETERS

    assert HEAD_WEIGHTS.stat().st_size < 2 * 1024 * 1024
    head = load_file(str(HEAD_WEIGHTS))
    assert set(head) == set(HEAD_PARAMETERS)
    assert head["vocab_transform.weight"].shape == (384, 384) and head["vocab_projector.bias"].shape == (30522,)
    assert sum(value.size for value in head.values()) < 200_000
    assert all(np.isfinite(value).all() for value in head.values())


def test_training_log_beats_the_baseline_and_matches_the_card() -> None:
    log = json.loads(TRAINING_LOG.read_text())
    heldout, baseline = log["heldout"], log["baseline_most_frequent"]
    assert heldout["top1"] > baseline["top1"] + 0.01 and heldout["top5"] > baseline["top5"] + 0.01
    card = CARD.read_text()
    for figure in (heldout["top1"], heldout["top5"], log["heldout_slice"]["top1"], log["heldout_slice"]["top5"]):
        assert f"{figure:.3f}" in card, f"the model card does not quote {figure:.3f} from {TRAINING_LOG.name}"


def test_masking_is_deterministic_and_bert_shaped() -> None:
    sequences = encode_paragraphs(load_tokenizer(), ["The quick brown fox jumps over the lazy dog. " * 6] * 200)
    first, second = mask_sequences(sequences, 7), mask_sequences(sequences, 7)
    assert all(np.array_equal(a.input_ids, b.input_ids) for a, b in zip(first, second, strict=True))
    kinds = np.concatenate([item.kinds for item in first])
    selected = sum(len(item.positions) for item in first) / sum(len(s) - 2 for s in sequences)
    assert abs(selected - 0.15) < 0.01
    assert abs((kinds == KIND_MASK).mean() - 0.8) < 0.03
    assert abs((kinds == KIND_RANDOM).mean() - 0.1) < 0.03 and abs((kinds == KIND_KEEP).mean() - 0.1) < 0.03
    for item in first:
        assert (item.input_ids[item.positions[item.kinds == KIND_MASK]] == MASK_ID).all()
        assert item.input_ids[0] == 101 and item.input_ids[-1] == 102


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from model_export.default_model.build import build_default_model

    return build_default_model(tmp_path_factory.mktemp("default-model") / "offline-default")


@pytest.fixture(scope="module")
def client(built: Path) -> Iterator[Any]:
    from app.server import create_app
    from app.settings import Settings
    from tests.app.conftest import serving

    settings = Settings(model_dir=built, providers=["cpu"], intra_op_threads=1, variant="fp32")
    with serving(create_app(settings)) as test_client:
        yield test_client


@pytest.mark.slow
def test_built_default_passes_the_export_gates(built: Path) -> None:
    from model_export.default_model.build import build_default_model, is_current
    from model_export.manifest import verify_model_dir

    manifest = verify_model_dir(built)
    assert manifest.model_id == MODEL_ID and manifest.demo
    assert manifest.tasks == ["embed", "fill-mask"] and manifest.arch.architecture == "DistilBertForMaskedLM"
    assert set(manifest.variants) == {"fp32", "fp16"}
    for variant in manifest.variants.values():
        assert variant.fusion_asserted and variant.fused_ops.get("Attention") == 6
        assert variant.parity.top5_identical and variant.parity.embedding_min_cosine >= 0.999
    assert is_current(built)
    messages: list[str] = []
    assert build_default_model(built, progress=messages.append) == built
    assert messages and "reusing" in messages[0], "a second build must reuse the first"


@pytest.mark.slow
def test_info_marks_the_demo(client: Any) -> None:
    info = client.get("/info").json()
    assert info["demo"] is True and info["model_id"] == MODEL_ID


@pytest.mark.slow
def test_fill_mask_returns_the_pipeline_json(client: Any, built: Path) -> None:
    import transformers

    from model_export.default_model.build import checkpoint_dir_for

    checkpoint = str(checkpoint_dir_for(built))
    pipeline = transformers.pipeline("fill-mask", model=checkpoint, tokenizer=checkpoint)
    response = client.post("/fill-mask", json={"inputs": SEED_PROMPTS})
    assert response.status_code == 200
    for ours, prompt in zip(response.json(), SEED_PROMPTS, strict=True):
        theirs = pipeline(prompt)
        assert [c["token"] for c in ours] == [c["token"] for c in theirs], prompt
        assert [c["token_str"] for c in ours] == [c["token_str"] for c in theirs], prompt
        assert [c["sequence"] for c in ours] == [c["sequence"] for c in theirs], prompt
        assert np.allclose([c["score"] for c in ours], [c["score"] for c in theirs], atol=1e-4), prompt


@pytest.mark.slow
def test_stsb_via_embed_equals_all_minilm(client: Any) -> None:
    from scipy.stats import spearmanr

    from model_export.stsb import read_pairs

    first, second, gold = read_pairs(stsb_test_csv())
    unique = sorted(set(first) | set(second))
    vectors = []
    for start in range(0, len(unique), 32):
        response = client.post("/embed", json={"inputs": unique[start : start + 32], "normalize": True})
        assert response.status_code == 200, response.text
        vectors.extend(response.json())
    embeddings = np.array(vectors)
    assert embeddings.shape == (len(unique), 384)
    row = {sentence: index for index, sentence in enumerate(unique)}
    cosines = [embeddings[row[a]] @ embeddings[row[b]] for a, b in zip(first, second, strict=True)]
    spearman = float(spearmanr(cosines, gold).statistic)
    assert abs(spearman - PUBLISHED_STSB) <= 0.005, spearman


@pytest.mark.slow
def test_heldout_slice_accuracy_matches_the_model_card(built: Path) -> None:
    import onnxruntime as ort

    from model_export.default_model.train import slice_accuracy
    from model_export.manifest import ATTENTION_MASK, INPUT_IDS, MASK_LOGITS

    session = ort.InferenceSession(str(built / "model.fp32.onnx"), providers=["CPUExecutionProvider"])

    def predict(ids: np.ndarray, attention: np.ndarray) -> np.ndarray:
        return session.run([MASK_LOGITS], {INPUT_IDS: ids, ATTENTION_MASK: attention})[0]

    measured = slice_accuracy(predict, HELDOUT_SLICE)
    recorded = json.loads(TRAINING_LOG.read_text())["heldout_slice"]
    assert measured.positions == recorded["positions"]
    assert abs(measured.top1 - recorded["top1"]) <= 0.02 and abs(measured.top5 - recorded["top5"]) <= 0.02
    quoted = re.search(r"slice[^\n]*?top-1 ([0-9.]+)[^\n]*?top-5 ([0-9.]+)", CARD.read_text())
    assert quoted, "the model card quotes the slice figures as 'slice ... top-1 X ... top-5 Y'"
    assert abs(measured.top1 - float(quoted.group(1))) <= 0.02 and abs(measured.top5 - float(quoted.group(2))) <= 0.02
