"""Teacher-free from a plain encoder (BertModel, DistilBertModel: no masked-LM head), and
--trained-only output: what the offline demo is trained with (model_export.default_model.train)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from model_export.distill import run
from model_export.distill.__main__ import main
from model_export.distill.trained import BASE_FILE, trained_files
from tests.model_export.distill.conftest import CORPUS, quiet, small_config

HEAD = ("vocab_transform.weight", "vocab_transform.bias", "vocab_layer_norm.weight", "vocab_layer_norm.bias",
        "vocab_projector.bias")


@pytest.fixture(scope="module")
def bert_encoder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from tests.tiny_models import build_tiny_checkpoint

    return build_tiny_checkpoint(tmp_path_factory.mktemp("encoder") / "bert", "bert-encoder", layers=2)


@pytest.mark.parametrize("kind", ["bert-encoder", "distilbert-encoder"])
def test_an_encoder_gets_its_body_and_a_new_tied_head(tmp_path: Path, kind: str) -> None:
    import transformers

    from tests.tiny_models import build_tiny_checkpoint

    encoder_dir = build_tiny_checkpoint(tmp_path / kind, kind, layers=2)
    prepared = run.prepare(small_config(tmp_path, encoder_dir, teacher_free=True, student_layers=2), quiet)
    student = run.build_distiller(prepared, quiet).student.eval()
    encoder = transformers.AutoModel.from_pretrained(encoder_dir).eval()
    ids = torch.tensor([[101, 1996, 4248, 2829, 4419, 102]])
    with torch.no_grad():
        expected = encoder(input_ids=ids).last_hidden_state
        actual = student.distilbert(input_ids=ids).last_hidden_state
    assert float((expected - actual).abs().max()) < 1e-5, "the body is the encoder's, weight for weight"
    assert student.vocab_projector.weight.data_ptr() == student.distilbert.embeddings.word_embeddings.weight.data_ptr()
    assert torch.equal(student.vocab_transform.weight, torch.eye(32)) and not student.vocab_transform.bias.any()
    # The projector bias starts at the log unigram frequency: the most frequent training token ranks first.
    most_frequent = int(np.argmax(prepared.token_counts))
    assert int(student.vocab_projector.bias.argmax()) == most_frequent
    assert float(student.vocab_projector.bias.detach().max()) == 0.0


def test_an_encoder_needs_teacher_free(tmp_path: Path, bert_encoder: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main([str(bert_encoder), str(CORPUS), "--out", str(tmp_path / "out")]) == 1
    error = capsys.readouterr().err
    assert "a BertModel, not a masked-LM" in error and "pass --teacher-free" in error
    assert list(tmp_path.iterdir()) == []


def test_trained_only_writes_the_trained_tensors_that_rebuild_the_student(tmp_path: Path, bert_encoder: Path) -> None:
    """The output holds exactly the unfrozen tensors and the new head, in fp16, a file per group; those
    tensors applied to the encoder (as the demo's build does) give the trained student."""
    from model_export.distill.student import init_student

    config = small_config(tmp_path, bert_encoder, teacher_free=True, student_layers=2, freeze=("embeddings", "0"),
                          trained_only=True, max_steps=3, keep_run_dir=True, checkpoint_every=3)
    result = run.distill(config, quiet)
    files = trained_files(result.out)
    assert [path.name for path in files] == ["trained_head.safetensors", "trained_layer1.safetensors"]
    tensors = {name: tensor for path in files for name, tensor in load_file(str(path)).items()}
    assert all(tensor.dtype == torch.float16 for tensor in tensors.values())
    assert set(HEAD) <= set(tensors)
    assert all(name in HEAD or name.startswith("distilbert.transformer.layer.1.") for name in tensors)
    assert not (result.out / "model.safetensors").exists()
    base = json.loads((result.out / BASE_FILE).read_text())
    assert base["init_layers"] == [0, 1] and base["files"] == [path.name for path in files]

    trained = torch.load(config.run_path / run.CHECKPOINT_FILE, weights_only=False)["student"]
    loaded = run.load_teacher(str(bert_encoder), need_mlm_head=False)
    rebuilt = init_student(loaded.model, [0, 1])
    rebuilt.load_state_dict({**rebuilt.state_dict(), **{name: tensor.float() for name, tensor in tensors.items()}})
    for name, value in rebuilt.state_dict().items():
        assert torch.allclose(value, trained[name].float(), atol=2e-3, rtol=1e-3), name


def test_trained_only_refuses_a_file_over_the_limit_before_training(tmp_path: Path, bert_encoder: Path,
                                                                    capsys: pytest.CaptureFixture[str]) -> None:
    """Unfrozen embeddings (30522 x 32 and the positions, in fp16: 2.0 MB) do not fit 1 MB files: one
    line, nothing written."""
    code = main([str(bert_encoder), str(CORPUS), "--out", str(tmp_path / "out"), "--teacher-free", "--trained-only",
                 "--max-file-mb", "1", "--max-steps", "1"])
    assert code == 1
    error = capsys.readouterr().err
    assert error.count("error:") == 1 and "the trained embeddings tensors take 2.0 MB in fp16, over the 1.0 MB" in error
    assert list(tmp_path.iterdir()) == []
