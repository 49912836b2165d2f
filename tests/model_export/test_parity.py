from __future__ import annotations

from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
from tokenizers import Tokenizer

from model_export.errors import ExportError, OutputMismatchError
from model_export.manifest import ATTENTION_MASK, INPUT_IDS, Parity, read_manifest
from model_export.parity import GATES, Gate, Reference, measure, top_k_ids
from model_export.sentences import MASK, VALIDATION_SENTENCES


def parity(**overrides) -> Parity:
    figures = dict(
        embedding_max_abs_diff=1e-6, embedding_min_cosine=1.0, mask_logits_max_abs_diff=1e-6,
        top1_agreement=1.0, top5_identical=True, top_k_agreement_with_pipeline=1.0, sentences=20, gate="",
    )
    return Parity(**{**figures, **overrides})


def test_validation_sentences_are_mixed() -> None:
    assert 16 <= len(VALIDATION_SENTENCES) <= 24
    lengths = [len(sentence.split()) for sentence in VALIDATION_SENTENCES]
    assert min(lengths) <= 2 and max(lengths) >= 40
    assert sum(sentence.count(MASK) for sentence in VALIDATION_SENTENCES) >= 12


def test_gates_as_the_issue_states_them() -> None:
    assert GATES["fp32"].failures(parity()) == []
    assert GATES["fp32"].failures(parity(mask_logits_max_abs_diff=2e-4))
    assert GATES["fp32"].failures(parity(top5_identical=False))
    assert GATES["fp16"].failures(parity(embedding_max_abs_diff=3e-3, embedding_min_cosine=0.9995)) == []
    assert GATES["fp16"].failures(parity(top1_agreement=0.95))
    assert GATES["fp16"].failures(parity(embedding_min_cosine=0.998))
    assert GATES["int8"].failures(parity(embedding_min_cosine=0.991, top1_agreement=0.9, top5_identical=False)) == []
    assert GATES["int8"].failures(parity(top1_agreement=0.85))
    assert GATES["int8"].failures(parity(embedding_min_cosine=0.985))


def test_embedding_only_gates_ignore_mask_criteria() -> None:
    embed_only = parity(mask_logits_max_abs_diff=None, top1_agreement=None, top5_identical=None, top_k_agreement_with_pipeline=None)
    for gate in GATES.values():
        assert gate.failures(embed_only) == []
    assert Gate(min_cosine=0.99).describe(has_mlm=False) == "embedding cosine >= 0.99"


def test_top_k_ids_are_largest_first() -> None:
    logits = np.array([[0.1, 3.0, -1.0, 2.0, 5.0, 0.0]])
    assert top_k_ids(logits, 3).tolist() == [[4, 1, 3]]


def test_receipts_record_every_figure(tiny_exports) -> None:
    manifest = read_manifest(tiny_exports["distilbert-mlm"])
    receipt = manifest.variants["fp32"].parity
    assert receipt.embedding_max_abs_diff <= 1e-4 and receipt.top5_identical
    assert receipt.top_k_agreement_with_pipeline == 1.0
    assert receipt.gate == GATES["fp32"].describe(has_mlm=True)
    encoder = read_manifest(tiny_exports["bert-encoder"]).variants["fp32"].parity
    assert encoder.mask_logits_max_abs_diff is None and encoder.top1_agreement is None


def test_mask_positions_off_the_mask_tokens_are_a_typed_error(tiny_exports) -> None:
    """A graph that gathers the wrong rows is broken, not imprecise: no gate can pass it."""
    model_dir: Path = tiny_exports["distilbert-mlm"]
    tokenizer = Tokenizer.from_file(str(model_dir / "tokenizer.json"))
    encoding = tokenizer.encode(f"the cat sat on the {MASK} .")
    feed = {INPUT_IDS: np.array([encoding.ids]), ATTENTION_MASK: np.array([encoding.attention_mask])}
    session = ort.InferenceSession(str(model_dir / "model.fp32.onnx"), providers=["CPUExecutionProvider"])
    embeddings, logits, positions = session.run(None, feed)
    reference = Reference(
        input_ids=feed[INPUT_IDS], attention_mask=feed[ATTENTION_MASK], embeddings=embeddings,
        mask_positions=positions + [0, 1], mask_logits=logits, pipeline_top_k=top_k_ids(logits),
    )
    with pytest.raises(OutputMismatchError, match="mask_positions differ.*--opset"):
        measure(model_dir / "model.fp32.onnx", reference, GATES["fp32"])


def test_a_gate_asked_for_a_gpu_refuses_to_pass_on_the_cpu_fallback(tiny_exports) -> None:
    """onnxruntime runs a session on the CPU when CUDA is missing, silently; a CUDA gate must not pass there."""
    model_dir: Path = tiny_exports["bert-encoder"]
    session = ort.InferenceSession(str(model_dir / "model.fp32.onnx"), providers=["CPUExecutionProvider"])
    feed = {INPUT_IDS: np.array([[101, 2023, 102]]), ATTENTION_MASK: np.ones((1, 3), dtype=np.int64)}
    reference = Reference(input_ids=feed[INPUT_IDS], attention_mask=feed[ATTENTION_MASK], embeddings=session.run(None, feed)[0])
    assert measure(model_dir / "model.fp32.onnx", reference, GATES["fp32"]).embedding_max_abs_diff == 0.0
    if "CUDAExecutionProvider" in ort.get_available_providers():
        pytest.skip("this onnxruntime build has CUDA: the fallback cannot be provoked by asking for it")
    cuda_first = ["CUDAExecutionProvider", "CPUExecutionProvider"]
    with pytest.raises(ExportError, match="asked for CUDAExecutionProvider, but onnxruntime runs it on"), pytest.warns(UserWarning):
        measure(model_dir / "model.fp32.onnx", reference, GATES["fp32"], providers=cuda_first)


def test_the_reference_can_be_computed_on_another_torch_device(tiny_checkpoints) -> None:
    from model_export.loading import load_checkpoint, resolve_source
    from model_export.parity import compute_reference

    loaded = load_checkpoint(resolve_source(str(tiny_checkpoints["distilbert-mlm"])))
    on_cpu = compute_reference(loaded.model, loaded.tokenizer, True, "mean", 128)
    on_cpu0 = compute_reference(loaded.model, loaded.tokenizer, True, "mean", 128, device="cpu:0")
    np.testing.assert_allclose(on_cpu.embeddings, on_cpu0.embeddings, atol=1e-6)
    assert np.array_equal(on_cpu.pipeline_top_k, on_cpu0.pipeline_top_k)
