"""Sequence- and token-classification checkpoints through the export pipeline (issue 14)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
import torch
import transformers
from tokenizers import Tokenizer

from model_export.errors import MissingFilesError, UnsupportedArchitectureError
from model_export.loading import load_checkpoint, resolve_source
from model_export.manifest import (
    ATTENTION_MASK,
    INPUT_IDS,
    LOGITS,
    TOKEN_TYPE_IDS,
    Classifier,
    Parity,
    read_manifest,
    verify_model_dir,
)
from model_export.parity import GATES, compute_classifier_reference, measure
from model_export.pipeline import ExportOptions, export_model
from model_export.sentences import VALIDATION_PAIRS, VALIDATION_SENTENCES
from tests.model_export.test_cli import assert_one_line_error, run_cli
from tests.model_export.test_loading import _drop_tensors
from tests.tiny_models import CLASSIFIER_KINDS, build_tiny_checkpoint, build_tiny_classifier

ARCHS = ("distilbert", "bert")
CASES = [(kind, arch) for kind in CLASSIFIER_KINDS for arch in ARCHS]
EXPECTED_PROBLEM_TYPE = {
    "sentiment": None,  # unset in config.json: kept unset, as the pipeline reads it
    "topics": "multi_label_classification",  # from config.json
    "reranker": None,
    "ner": None,
}
PAIRS = [("What is the capital of France?", "Paris is the capital of France."), ("A man plays a guitar.", "The stage is empty.")]


def quiet(message: str) -> None:
    pass


def checkpoint_of(model_dir: Path) -> Path:
    """Where tests.tiny_models.export_tiny_classifier left the checkpoint it exported."""
    return model_dir.parent / f"{model_dir.name}.checkpoint"


def encode(model_dir: Path, texts: list[str] | list[tuple[str, str]]) -> dict[str, np.ndarray]:
    """The model directory's tokenizer.json, as the server uses it: padded batch with type ids."""
    tokenizer = Tokenizer.from_file(str(model_dir / "tokenizer.json"))
    tokenizer.enable_padding()
    encodings = tokenizer.encode_batch(texts)
    return {
        INPUT_IDS: np.array([e.ids for e in encodings], dtype=np.int64),
        ATTENTION_MASK: np.array([e.attention_mask for e in encodings], dtype=np.int64),
        TOKEN_TYPE_IDS: np.array([e.type_ids for e in encodings], dtype=np.int64),
    }


def onnx_logits(model_dir: Path, feed: dict[str, np.ndarray], variant: str = "fp32") -> np.ndarray:
    session = ort.InferenceSession(str(model_dir / f"model.{variant}.onnx"), providers=["CPUExecutionProvider"])
    wanted = {i.name for i in session.get_inputs()}
    (logits,) = session.run([LOGITS], {name: value for name, value in feed.items() if name in wanted})
    return logits


def torch_logits(model_dir: Path, feed: dict[str, np.ndarray]) -> np.ndarray:
    model = transformers.AutoModelForSequenceClassification if "ner" not in model_dir.name else transformers.AutoModelForTokenClassification
    classifier = model.from_pretrained(checkpoint_of(model_dir)).eval()
    names = (INPUT_IDS, ATTENTION_MASK, TOKEN_TYPE_IDS) if classifier.config.model_type == "bert" else (INPUT_IDS, ATTENTION_MASK)
    with torch.no_grad():
        return classifier(**{name: torch.from_numpy(feed[name]) for name in names}).logits.numpy()


@pytest.mark.parametrize(("kind", "arch"), CASES)
def test_each_classifier_exports_with_its_manifest_and_passes_the_fp32_gate(tiny_classifier_dir, kind: str, arch: str) -> None:
    model_dir = tiny_classifier_dir(kind, arch)
    manifest = verify_model_dir(model_dir)
    head, labels, _ = CLASSIFIER_KINDS[kind]
    task = "token-classification" if head == "ForTokenClassification" else "text-classification"
    assert manifest.tasks == [task]
    assert manifest.arch.architecture == f"{'DistilBert' if arch == 'distilbert' else 'Bert'}{head}"
    assert manifest.classifier == Classifier(
        problem_type=EXPECTED_PROBLEM_TYPE[kind], id2label=dict(enumerate(labels)), num_labels=len(labels), pair_input=True
    )
    assert manifest.pooling == "cls"
    # The receipt reads back with integer label ids, as config.json's id2label keys are strings.
    assert json.loads((model_dir / "manifest.json").read_text())["classifier"]["id2label"]["0"] == labels[0]
    fp32 = manifest.variants["fp32"]
    assert fp32.fusion_asserted and fp32.fused_ops["Attention"] == manifest.arch.num_layers
    assert fp32.parity.logits_max_abs_diff <= 1e-4 and fp32.parity.argmax_agreement == 1.0
    assert fp32.parity.embedding_max_abs_diff is None and fp32.parity.top1_agreement is None
    assert fp32.parity.sentences == len(VALIDATION_SENTENCES) + len(VALIDATION_PAIRS)
    assert fp32.parity.gate == "max abs diff <= 0.0001, argmax identical"


@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize("kind", ["sentiment", "ner"])
def test_graph_takes_token_types_for_bert_only_and_returns_logits_per_sequence_or_token(
    tiny_classifier_dir, kind: str, arch: str
) -> None:
    model_dir = tiny_classifier_dir(kind, arch)
    session = ort.InferenceSession(str(model_dir / "model.fp32.onnx"), providers=["CPUExecutionProvider"])
    inputs = [(i.name, i.type) for i in session.get_inputs()]
    expected = [(INPUT_IDS, "tensor(int64)"), (ATTENTION_MASK, "tensor(int64)")]
    assert inputs == (expected + [(TOKEN_TYPE_IDS, "tensor(int64)")] if arch == "bert" else expected)
    assert [o.name for o in session.get_outputs()] == [LOGITS]
    for texts in (VALIDATION_SENTENCES[:1], list(VALIDATION_SENTENCES[:5])):  # batch 1 and 5, different lengths
        feed = encode(model_dir, texts)
        logits = onnx_logits(model_dir, feed)
        per_sequence = (len(texts), len(CLASSIFIER_KINDS[kind][1]))
        assert logits.shape == (per_sequence if kind == "sentiment" else (len(texts), feed[INPUT_IDS].shape[1], per_sequence[1]))
        assert logits.dtype == np.float32


@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize("kind", ["reranker", "ner"])
def test_sentence_pairs_match_pytorch(tiny_classifier_dir, kind: str, arch: str) -> None:
    model_dir = tiny_classifier_dir(kind, arch)
    feed = encode(model_dir, PAIRS)
    assert feed[TOKEN_TYPE_IDS].max() == 1  # [CLS] A [SEP] B [SEP]: B is segment 1
    ours, theirs = onnx_logits(model_dir, feed), torch_logits(model_dir, feed)
    real = feed[ATTENTION_MASK].astype(bool)
    if kind == "ner":
        ours, theirs = ours[real], theirs[real]
    np.testing.assert_allclose(ours, theirs, atol=1e-4)
    assert np.array_equal(ours.argmax(-1), theirs.argmax(-1))


def test_bert_graph_reads_the_token_types_rather_than_folding_them_to_zero(tiny_classifier_dir) -> None:
    model_dir = tiny_classifier_dir("reranker", "bert")
    feed = encode(model_dir, PAIRS)
    as_one_segment = {**feed, TOKEN_TYPE_IDS: np.zeros_like(feed[TOKEN_TYPE_IDS])}
    assert not np.allclose(onnx_logits(model_dir, feed), onnx_logits(model_dir, as_one_segment), atol=1e-3)


@pytest.mark.parametrize(("kind", "arch"), [("sentiment", "bert"), ("ner", "distilbert")])
def test_fp16_and_int8_are_gated_on_argmax_agreement(tmp_path: Path, kind: str, arch: str) -> None:
    checkpoint = build_tiny_classifier(tmp_path / "checkpoint", kind, arch)
    manifest = export_model(str(checkpoint), tmp_path / "model", ExportOptions(), quiet)
    gates = {name: variant.parity.gate for name, variant in manifest.variants.items()}
    assert gates["fp32"] == "max abs diff <= 0.0001, argmax identical"
    assert gates["fp16"] == "argmax identical"
    assert gates["int8"] == "argmax agreement >= 90%"
    for name, variant in manifest.variants.items():
        assert not GATES[name].failures(variant.parity)
        feed = encode(tmp_path / "model", list(VALIDATION_SENTENCES[:4]))
        assert onnx_logits(tmp_path / "model", feed, name).dtype == np.float32  # fp32 I/O in every variant
    assert list(manifest.variants) == ["fp32", "fp16", "int8"], manifest.notes


def test_gates_judge_a_classifier_by_logits_and_argmax() -> None:
    def parity(diff: float, agreement: float) -> Parity:
        return Parity(logits_max_abs_diff=diff, argmax_agreement=agreement, sentences=28, gate="")

    assert GATES["fp32"].failures(parity(1e-6, 1.0)) == []
    assert GATES["fp32"].failures(parity(2e-4, 1.0)) == ["max abs diff 0.0002 > 0.0001"]
    assert GATES["fp32"].failures(parity(1e-6, 27 / 28)) == ["argmax agreement 96%, not identical"]
    assert GATES["fp16"].failures(parity(5e-3, 1.0)) == []  # no embedding, so no cosine to miss
    assert GATES["int8"].failures(parity(0.1, 0.93)) == []
    assert GATES["int8"].failures(parity(0.1, 0.85)) == ["argmax agreement 85% < 90%"]


def test_token_logits_are_compared_on_real_tokens_only(tiny_classifier_dir) -> None:
    """Padded positions carry logits the server never reads; the gate must neither pass nor fail on them."""
    model_dir = tiny_classifier_dir("ner", "distilbert")
    loaded = load_checkpoint(resolve_source(str(checkpoint_of(model_dir))))
    reference = compute_classifier_reference(loaded.model, loaded.tokenizer, 128, pair_input=True)
    padded = ~reference.attention_mask.astype(bool)
    assert padded.any()
    reference.logits[padded] += 100.0
    assert measure(model_dir / "model.fp32.onnx", reference, GATES["fp32"]).logits_max_abs_diff <= 1e-4
    reference.pairs.logits[0, 1, 2] += 1.0  # a real token of the first pair
    assert measure(model_dir / "model.fp32.onnx", reference, GATES["fp32"]).logits_max_abs_diff >= 0.9


def test_a_single_logit_is_judged_by_its_sign(tiny_classifier_dir) -> None:
    """A regression head has no argmax to compare; the gate reads the decision sigmoid(logit) > 0.5."""
    model_dir = tiny_classifier_dir("reranker", "bert")
    loaded = load_checkpoint(resolve_source(str(checkpoint_of(model_dir))))
    reference = compute_classifier_reference(loaded.model, loaded.tokenizer, 128, pair_input=True)
    assert measure(model_dir / "model.fp32.onnx", reference, GATES["fp32"]).argmax_agreement == 1.0
    reference.logits[:2] = -reference.logits[:2]
    rows = len(reference.sentences) + len(reference.pairs.sentences)
    flipped = measure(model_dir / "model.fp32.onnx", reference, GATES["fp32"])
    assert flipped.argmax_agreement == pytest.approx(1 - 2 / rows)
    assert GATES["fp32"].failures(flipped)[-1].endswith("not identical")


def test_a_missing_classifier_weight_is_refused(tmp_path: Path) -> None:
    checkpoint = build_tiny_classifier(tmp_path / "checkpoint", "sentiment", "distilbert")
    _drop_tensors(checkpoint, "classifier.weight")
    with pytest.raises(MissingFilesError, match="1 missing tensor\\(s\\) the exported graph uses, e.g. classifier.weight"):
        load_checkpoint(resolve_source(str(checkpoint)))


@pytest.mark.parametrize("architecture", ["BertForQuestionAnswering", "DistilBertForMultipleChoice", "BertForPreTraining"])
def test_other_heads_are_refused_before_the_weights_are_read(tmp_path: Path, architecture: str) -> None:
    checkpoint = build_tiny_checkpoint(tmp_path / "checkpoint", "bert-encoder" if architecture.startswith("Bert") else "distilbert-encoder")
    config = json.loads((checkpoint / "config.json").read_text())
    (checkpoint / "config.json").write_text(json.dumps({**config, "architectures": [architecture]}))
    (checkpoint / "model.safetensors").write_bytes(b"not weights")  # never read: the head is refused first
    with pytest.raises(UnsupportedArchitectureError, match=f"^{architecture}: this exporter makes graphs of encoders") as refused:
        resolve_source(str(checkpoint))
    assert "\n" not in str(refused.value)


def test_cli_refuses_a_question_answering_checkpoint_in_one_line(repo_root: Path, tmp_path: Path) -> None:
    checkpoint = build_tiny_checkpoint(tmp_path / "checkpoint", "bert-encoder")
    config = json.loads((checkpoint / "config.json").read_text())
    (checkpoint / "config.json").write_text(json.dumps({**config, "architectures": ["BertForQuestionAnswering"]}))
    result = run_cli(repo_root, str(checkpoint), "--out", str(tmp_path / "out"))
    assert_one_line_error(result, "BertForQuestionAnswering", "sequence-classification and token-classification")
    assert not (tmp_path / "out").exists()


def test_cli_summary_shows_logits_and_argmax(repo_root: Path, tiny_classifier_dir, tmp_path: Path) -> None:
    checkpoint = checkpoint_of(tiny_classifier_dir("sentiment", "distilbert"))
    result = run_cli(repo_root, str(checkpoint), "--out", str(tmp_path / "out"), "--variants", "fp32")
    assert result.returncode == 0, result.stderr
    assert "(tasks: text-classification, pooling cls" in result.stdout
    row = next(line for line in result.stdout.splitlines() if line.startswith("| fp32 |") and "argmax" in line)
    assert row.startswith("| fp32 | - | - | ") and "| 100% |" in row
    assert read_manifest(tmp_path / "out").classifier.num_labels == 3


@pytest.mark.parametrize(
    ("edit", "words"),
    [
        (lambda raw: raw.pop("classifier"), "classifier block is present iff"),
        (lambda raw: raw.update(tasks=["text-classification", "embed"]), "exactly one task"),
        (lambda raw: raw["classifier"].update(num_labels=4), "id2label must have keys 0..3"),
        (lambda raw: raw["classifier"].update(problem_type="ranking"), "classifier.problem_type"),
    ],
)
def test_the_server_refuses_an_inconsistent_classifier_manifest(tiny_classifier_dir, tmp_path: Path, edit, words: str) -> None:
    from model_export.manifest import ManifestError

    raw = json.loads((tiny_classifier_dir("sentiment", "distilbert") / "manifest.json").read_text())
    edit(raw)
    (tmp_path / "manifest.json").write_text(json.dumps(raw))
    with pytest.raises(ManifestError, match=words):
        read_manifest(tmp_path)


@pytest.mark.slow
def test_a_real_size_bert_classifier_fuses_with_its_token_type_input(tmp_path: Path) -> None:
    """all-MiniLM-L6-v2's trained encoder (12 heads, hidden 384) under a seeded random 3-label head."""
    import shutil

    from tests.tiny_models import minilm_dir

    torch.manual_seed(0)
    checkpoint = tmp_path / "minilm-classifier"
    transformers.BertForSequenceClassification.from_pretrained(minilm_dir(), num_labels=3).save_pretrained(checkpoint)
    for name in ("tokenizer.json", "vocab.txt", "special_tokens_map.json", "tokenizer_config.json"):
        shutil.copyfile(minilm_dir() / name, checkpoint / name)
    manifest = export_model(str(checkpoint), tmp_path / "model", ExportOptions(variants=("fp32",)), quiet)
    fp32 = manifest.variants["fp32"]
    assert fp32.fusion_asserted and fp32.fused_ops["Attention"] == 6 and fp32.fused_ops["EmbedLayerNormalization"] == 1
    assert fp32.parity.logits_max_abs_diff <= 1e-4 and fp32.parity.argmax_agreement == 1.0
    session = ort.InferenceSession(str(tmp_path / "model" / "model.fp32.onnx"), providers=["CPUExecutionProvider"])
    assert TOKEN_TYPE_IDS in [i.name for i in session.get_inputs()]
