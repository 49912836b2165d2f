"""The offline default: exact conversion, the committed trained weights, the two protocols' masking,
and (slow) both built directories through onnxruntime.

The slow tests build the offline default once (the real conversion and export pipeline) and check
each directory: the export gates, the fill-mask demo against transformers' pipeline and its held-out
accuracy on the committed slice (both protocols) against the training log and the baseline, and the
MiniLM directory's embeddings against the MiniLM export test_minilm checks, and its STS-B Spearman
on the split the project ships.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest

from model_export.default_model import EMBED_MODEL_ID, HELDOUT_SLICE, MODEL_ID, TRAINING_LOG
from model_export.default_model.build import minilm_dir
from model_export.default_model.masking import (
    KIND_KEEP, KIND_MASK, KIND_RANDOM, MASK_ID, encode_paragraphs, load_tokenizer, mask_one_word_per_sentence,
    mask_sequences, split_sentences,
)
from model_export.default_model.weights import MAX_FILE_BYTES, WeightsError, apply_trained, weight_files

REPO = Path(__file__).resolve().parents[2]
CARD = REPO / "docs" / "default-model.md"
# The prompts of distilbert-base-uncased's model card (its fill-mask and bias examples).
SEED_PROMPTS = ["Hello I'm a [MASK] model.", "The White man worked as a [MASK].", "The Black woman worked as a [MASK]."]
PUBLISHED_STSB = 0.8203
SLICE_TOLERANCE = 0.01


def test_conversion_reproduces_minilm_hidden_states() -> None:
    from model_export.default_model.convert import convert_minilm, max_hidden_state_diff

    model = convert_minilm(minilm_dir())
    texts = ["Hello I'm a [MASK] model.", "A much longer sentence, padded differently, about the river bank at dawn.", "x"]
    assert max_hidden_state_diff(minilm_dir(), model, texts) < 1e-4
    assert model.vocab_projector.weight.data_ptr() == model.distilbert.embeddings.word_embeddings.weight.data_ptr()


def test_committed_weights_are_small_complete_and_apply() -> None:
    from model_export.default_model.convert import HEAD_PARAMETERS, convert_minilm
    from model_export.default_model.weights import load_trained

    files = weight_files()
    assert files and all(path.stat().st_size <= MAX_FILE_BYTES for path in files)
    trained = load_trained(files)
    assert set(HEAD_PARAMETERS) <= set(trained)
    assert not any("embeddings" in name for name in trained), "the word embeddings (tied to the projector) stay MiniLM's"
    assert all(bool(value.isfinite().all()) for value in trained.values())
    recorded = {entry["name"] for entry in json.loads(TRAINING_LOG.read_text())["files"]}
    assert recorded == {path.name for path in files}, "the training log lists exactly the committed weight files"
    convert_minilm(minilm_dir(), trained=trained)


def test_trained_tensors_replace_their_parameters_and_nothing_else() -> None:
    import torch
    import transformers

    config = transformers.DistilBertConfig(vocab_size=50, dim=8, hidden_dim=16, n_layers=1, n_heads=2, max_position_embeddings=16)
    model = transformers.DistilBertForMaskedLM(config).eval()
    name = "distilbert.transformer.layer.0.attention.q_lin.weight"
    untouched = model.get_parameter("distilbert.transformer.layer.0.attention.k_lin.weight").detach().clone()
    replacement = torch.randn(8, 8)
    apply_trained(model, {name: replacement, "vocab_projector.bias": torch.ones(50)})
    assert torch.equal(model.get_parameter(name), replacement)
    assert bool((model.vocab_projector.bias == 1).all())
    assert torch.equal(model.get_parameter("distilbert.transformer.layer.0.attention.k_lin.weight"), untouched)
    with pytest.raises(WeightsError, match="for a"):
        apply_trained(model, {name: torch.randn(8, 4)})
    with pytest.raises(WeightsError, match="not a parameter"):
        apply_trained(model, {"distilbert.transformer.layer.0.attention.q_lin.lora_A": torch.randn(2, 8)})


def test_the_build_rebuilds_what_the_command_trained(tmp_path: Path) -> None:
    """The distill command's student from MiniLM (a BertModel: new head, all six layers), with its
    unfrozen layers and head changed as training would, written --trained-only and adopted as the
    package's weight files: the build's conversion with those files computes what the student does."""
    import torch

    from model_export.default_model.convert import convert_minilm
    from model_export.default_model.train import TrainConfig, adopt
    from model_export.default_model.weights import load_trained
    from model_export.distill.student import freeze, init_student
    from model_export.distill.teacher import load_teacher
    from model_export.distill.trained import save_trained, trained_tensors

    student = init_student(load_teacher(str(minilm_dir()), need_mlm_head=False).model, list(range(6)),
                           token_counts=np.arange(30522)).eval()
    freeze(student, list(TrainConfig().freeze))
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for parameter in student.parameters():
            if parameter.requires_grad:
                parameter.add_(0.02 * torch.randn(parameter.shape, generator=generator))
    run_output, package = tmp_path / "run", tmp_path / "package"
    run_output.mkdir()
    package.mkdir()
    (package / "mlm_lora.safetensors").write_bytes(b"stale")
    save_trained(trained_tensors(student), run_output, MAX_FILE_BYTES, {"format": "pt"})
    files = adopt(run_output, package)
    trained_layers = sorted(set(range(6)) - {int(part) for part in TrainConfig().freeze if part.isdigit()})
    assert [path.name for path in files] == [f"mlm_{name}.safetensors" for name in ["head", *(f"layer{i}" for i in trained_layers)]]
    assert weight_files(package) == files, "the earlier training's weight files are gone"
    assert sum(path.stat().st_size for path in files) < 20_000_000
    built = convert_minilm(minilm_dir(), trained=load_trained(files))
    ids = torch.tensor([[101, 7592, 1045, 1005, 1049, 1037, 103, 2944, 1012, 102]])
    with torch.no_grad():
        expected, actual = student(input_ids=ids).logits, built(input_ids=ids).logits
    assert float((expected - actual).abs().max()) < 0.05 * float(expected.abs().max())
    assert torch.equal(expected[0, 6].topk(5).indices, actual[0, 6].topk(5).indices)


def test_train_demo_runs_the_distill_command_teacher_free() -> None:
    """`make train-demo` is the distill command: its options, printed into the log as a command line,
    parse back into the very configuration the training passes to it."""
    from model_export.default_model.train import TrainConfig, command_line
    from model_export.distill.__main__ import build_parser, make_config

    config = TrainConfig().distill_config(Path("text"), Path("out"))
    assert config.teacher == str(minilm_dir()) and config.teacher_free and config.trained_only
    assert "embeddings" in config.freeze
    parsed = make_config(vars(build_parser().parse_args(command_line(config))))
    assert parsed.run_defining() == config.run_defining()
    assert (parsed.trained_only, parsed.max_file_mb) == (config.trained_only, config.max_file_mb)


def test_the_gpu_kit_script_runs_the_same_training_on_cuda(tmp_path: Path) -> None:
    """The GPU host's one command is the demo's training with the GPU settings: its arguments parse
    into GPU_CONFIG's configuration, on CUDA, with its output bounded for the trip back."""
    import shlex

    from model_export.default_model.train import GPU_CONFIG, write_kit_script
    from model_export.distill.__main__ import build_parser, make_config

    script = write_kit_script(tmp_path).read_text()
    line = next(line for line in script.splitlines() if "model_export.distill" in line)
    arguments = shlex.split(line.split("model_export.distill", 1)[1].split("2>&1")[0].replace('"$@"', ""))
    parsed = make_config(vars(build_parser().parse_args(arguments)))
    expected = GPU_CONFIG.distill_config(Path("$KIT/corpus.npz"), Path("/tmp/demo-student"))
    assert parsed.device == "cuda" and parsed.trained_only and parsed.corpus == ("$KIT/corpus.npz",)
    for name in ("teacher_free", "freeze", "max_steps", "batch_tokens", "lr", "alpha_mlm", "alpha_cos", "student_layers"):
        assert getattr(parsed, name) == getattr(expected, name), name
    assert "split -b 15000000" in script, "files of at most 16 MB come back"


def test_a_training_replaces_the_shipped_weights_only_if_at_least_as_good() -> None:
    from model_export.default_model.train import GATE, at_least_as_good

    shipped = {"accuracy": json.loads(TRAINING_LOG.read_text())["accuracy"]}
    top1 = shipped["accuracy"][GATE]["top1"]
    assert not at_least_as_good({GATE: {"top1": top1 - 0.01}}, shipped)
    assert at_least_as_good({GATE: {"top1": top1}}, shipped)
    assert at_least_as_good({GATE: {"top1": 0.0}}, None), "nothing shipped yet: any training is adopted"


def test_training_log_beats_the_baselines_and_matches_the_card() -> None:
    log = json.loads(TRAINING_LOG.read_text())
    card = CARD.read_text()
    for name, accuracy in log["accuracy"].items():
        baseline = log["baseline_most_frequent"][name]
        assert accuracy["top1"] > baseline["top1"] and accuracy["top5"] > baseline["top5"], name
        for figure in (accuracy["top1"], accuracy["top5"]):
            assert f"{figure:.3f}" in card, f"the model card does not quote {name} {figure:.3f} from {TRAINING_LOG.name}"


def test_field_masking_is_deterministic_and_bert_shaped() -> None:
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


def test_reader_protocol_masks_one_whole_word_per_sentence() -> None:
    tokenizer = load_tokenizer()
    paragraph = "Mr. Darcy danced with her twice. She laughed, unbelievably! Was it 1811? It was a fine evening indeed."
    assert split_sentences(paragraph) == ["Mr. Darcy danced with her twice.", "It was a fine evening indeed."]
    slice_paragraphs = HELDOUT_SLICE.read_text(encoding="utf-8").splitlines()[:60]
    masked = mask_one_word_per_sentence(tokenizer, slice_paragraphs, seed=5)
    assert len(masked) > 100
    vocab = {index: token for token, index in tokenizer.get_vocab().items()}
    for item in masked:
        assert (item.input_ids == MASK_ID).sum() == 1 and len(item.positions) == 1
        word = vocab[int(item.labels[0])]
        assert word.isalpha() and word.isascii() and not word.startswith("##")
        following = vocab[int(item.input_ids[item.positions[0] + 1])]
        assert not following.startswith("##"), "the masked word must be whole, not the start of a longer word"
    again = mask_one_word_per_sentence(tokenizer, slice_paragraphs, seed=5)
    assert all(np.array_equal(a.input_ids, b.input_ids) for a, b in zip(masked, again, strict=True))


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    from model_export.default_model.build import build_offline_default

    return build_offline_default(tmp_path_factory.mktemp("default-model") / "offline-default")


@pytest.mark.slow
def test_built_directories_pass_the_export_gates_and_are_reused(built: list[Path]) -> None:
    from model_export.default_model.build import build_offline_default, offline_default_dirs, stamps_current
    from model_export.manifest import verify_model_dir

    fill_mask_dir, embed_dir = built
    assert built == offline_default_dirs(fill_mask_dir.parent)
    demo = verify_model_dir(fill_mask_dir)
    assert demo.model_id == MODEL_ID and demo.demo
    assert demo.tasks == ["fill-mask"] and demo.arch.architecture == "DistilBertForMaskedLM"
    assert set(demo.variants) == {"fp32", "fp16"}
    embed = verify_model_dir(embed_dir)
    assert embed.model_id == EMBED_MODEL_ID and not embed.demo and embed.tasks == ["embed"]
    assert embed.pooling == "mean" and set(embed.variants) == {"fp32", "fp16", "int8"}
    for manifest in (demo, embed):
        for variant in manifest.variants.values():
            attention = variant.fused_ops.get("Attention", variant.fused_ops.get("QAttention"))  # int8: QAttention
            assert variant.fusion_asserted and attention == 6
            assert variant.parity.embedding_min_cosine >= 0.99
    assert all(variant.parity.top5_identical for variant in demo.variants.values())
    assert stamps_current(fill_mask_dir.parent)
    messages: list[str] = []
    assert build_offline_default(fill_mask_dir.parent, progress=messages.append) == built
    assert len(messages) == 2 and all("reusing" in message for message in messages), "a second build must reuse both"


def _onnx_mask_logits(model_dir: Path):
    import onnxruntime as ort

    from model_export.manifest import ATTENTION_MASK, INPUT_IDS, MASK_LOGITS

    session = ort.InferenceSession(str(model_dir / "model.fp32.onnx"), providers=["CPUExecutionProvider"])

    def predict(ids: np.ndarray, attention: np.ndarray) -> np.ndarray:
        return session.run([MASK_LOGITS], {INPUT_IDS: ids, ATTENTION_MASK: attention})[0]

    return predict


@pytest.mark.slow
def test_fill_mask_top5_matches_the_transformers_pipeline(built: list[Path]) -> None:
    import transformers
    from tokenizers import Tokenizer

    from model_export.default_model.build import checkpoint_dir_for

    checkpoint = str(checkpoint_dir_for(built[0]))
    pipeline = transformers.pipeline("fill-mask", model=checkpoint, tokenizer=checkpoint)
    tokenizer = Tokenizer.from_file(str(built[0] / "tokenizer.json"))
    predict = _onnx_mask_logits(built[0])
    for prompt in SEED_PROMPTS:
        ids = np.array([tokenizer.encode(prompt).ids], dtype=np.int64)
        logits = predict(ids, np.ones_like(ids))[0]
        ours = np.argsort(-logits)[:5].tolist()
        assert ours == [candidate["token"] for candidate in pipeline(prompt)], prompt


@pytest.mark.slow
def test_heldout_slice_accuracy_matches_the_log_and_beats_the_baseline(built: list[Path]) -> None:
    from model_export.default_model.train import evaluate_sets, slice_sets

    measured = evaluate_sets(_onnx_mask_logits(built[0]), slice_sets(HELDOUT_SLICE))
    log = json.loads(TRAINING_LOG.read_text())
    for name, accuracy in measured.items():
        recorded, baseline = log["accuracy"][name], log["baseline_most_frequent"][name]
        assert accuracy["positions"] == recorded["positions"], name
        assert abs(accuracy["top1"] - recorded["top1"]) <= SLICE_TOLERANCE, (name, accuracy, recorded)
        assert abs(accuracy["top5"] - recorded["top5"]) <= SLICE_TOLERANCE, (name, accuracy, recorded)
        assert accuracy["top1"] > baseline["top1"] and accuracy["top5"] > baseline["top5"], (name, accuracy, baseline)
    quoted = re.search(r"slice[^\n]*?top-1 ([0-9.]+)[^\n]*?top-5 ([0-9.]+)", CARD.read_text())
    assert quoted, "the model card quotes the reader's slice figures as 'slice ... top-1 X ... top-5 Y'"
    assert abs(measured["reader_slice"]["top1"] - float(quoted.group(1))) <= SLICE_TOLERANCE
    assert abs(measured["reader_slice"]["top5"] - float(quoted.group(2))) <= SLICE_TOLERANCE


@pytest.mark.slow
def test_minilm_directory_embeds_as_the_checked_minilm_export(built: list[Path], minilm_model_dir: Path) -> None:
    """The same embeddings as the MiniLM export that test_minilm checks against sentence-transformers'
    mean pooling and STS-B."""
    from model_export.stsb import embed

    sentences = ["A man is playing a guitar.", "Someone plays an instrument on stage tonight.", "The cat sat.",
                 "Stocks fell sharply after the announcement of new tariffs on imported steel."]
    for variant in ("fp32", "int8"):
        ours, checked = embed(built[1], variant, sentences), embed(minilm_model_dir, variant, sentences)
        cosine = (ours * checked).sum(1) / np.linalg.norm(ours, axis=1) / np.linalg.norm(checked, axis=1)
        assert cosine.min() >= 0.99999, variant


@pytest.mark.slow
def test_minilm_directory_stsb_equals_the_published_figure(built: list[Path]) -> None:
    from app.data import stsb_test_csv
    from model_export.stsb import evaluate_model_dir

    assert evaluate_model_dir(built[1], "fp32", stsb_test_csv()) == pytest.approx(PUBLISHED_STSB, abs=0.0005)
