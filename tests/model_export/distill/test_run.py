"""Runs as wholes: a few hundred steps lower every loss term and raise held-out accuracy; a run
resumed from its checkpoint continues exactly where the uninterrupted one went."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from model_export.distill import run
from model_export.distill.__main__ import main
from tests.model_export.distill.conftest import quiet, small_config

LOSS_TERMS = ("ce", "mlm", "cos")


@pytest.fixture(scope="module")
def trained_teacher(tmp_path_factory: pytest.TempPathFactory, bert_teacher: Path) -> Path:
    """The random BERT taught the corpus by the command itself (teacher-free, masked LM only, every
    layer kept): a teacher worth distilling, as a DistilBertForMaskedLM."""
    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("trained-teacher")
    config = small_config(root, bert_teacher, out=root / "teacher", teacher_free=True, student_layers=4, alpha_cos=0.0,
                          max_steps=500, lr=5e-3, log_every=100)
    return run.distill(config, quiet).out


@pytest.mark.slow
def test_distillation_lowers_every_loss_and_raises_heldout_accuracy(tmp_path: Path, trained_teacher: Path) -> None:
    config = small_config(tmp_path, trained_teacher, student_layers=1, max_steps=300, lr=2e-3, ce_positions="masked")
    result = run.distill(config, quiet)
    history = result.log["history"]
    assert len(history) == 300
    for term in LOSS_TERMS:
        first = sum(record[term] for record in history[:30]) / 30
        last = sum(record[term] for record in history[-30:]) / 30
        assert last < 0.95 * first, f"{term}: {first:.4f} -> {last:.4f}"
    start, end = result.eval["student_at_start"], result.eval["student"]
    assert end["top1"] > start["top1"] + 0.02, (start, end)
    assert end["agreement"] is not None
    assert end["top1"] > result.eval["baseline_most_frequent"]["top1"]
    written = json.loads((result.out / run.EVAL_FILE).read_text())
    assert written["student"] == end and written["steps"] == 300
    assert result.log["evals"][-1] == {"step": 300, **end}, "the log's evaluations end with the final one"


def test_a_resumed_run_continues_the_same_run(tmp_path: Path, bert_teacher: Path) -> None:
    """Interrupted after its step-6 checkpoint and resumed with `--resume` (options read back from the
    run), it logs the same losses and ends with the same weights as the run that was not interrupted."""
    options = {"max_steps": 12, "checkpoint_every": 6, "accumulate": 2, "ce_positions": "masked", "batch_tokens": 256}
    whole = run.distill(small_config(tmp_path / "a", bert_teacher, **options), quiet)

    config = small_config(tmp_path / "b", bert_teacher, **options)
    prepared = run.prepare(config, quiet)
    interrupted = run.build_distiller(prepared, quiet)
    run.train(interrupted, prepared, until=8, say=quiet)  # steps 7 and 8 are lost with the process
    del interrupted, prepared
    torch.manual_seed(1234)  # a fresh process would not share the first one's RNG state either
    assert main([str(bert_teacher), *config.corpus, "--out", str(config.out), "--resume"]) == 0

    resumed = json.loads((config.out / run.LOG_FILE).read_text())
    assert [record["step"] for record in resumed["history"]] == list(range(1, 13))
    for ours, theirs in zip(resumed["history"], whole.log["history"], strict=True):
        for name in ("loss", *LOSS_TERMS, "lr", "tokens"):
            assert ours[name] == pytest.approx(theirs[name], rel=1e-6, abs=1e-9), (ours["step"], name)
    assert resumed["evals"] == whole.log["evals"]
    a, b = load_file(str(whole.out / "model.safetensors")), load_file(str(config.out / "model.safetensors"))
    assert a.keys() == b.keys() and all(torch.equal(a[key], b[key]) for key in a)
    assert not config.run_path.exists(), "the run directory goes once the output is written"


def test_resume_refuses_a_different_run(tmp_path: Path, bert_teacher: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = small_config(tmp_path, bert_teacher, max_steps=4, checkpoint_every=2, ce_positions="masked")
    prepared = run.prepare(config, quiet)
    run.train(run.build_distiller(prepared, quiet), prepared, until=2, say=quiet)
    assert main([str(bert_teacher), *config.corpus, "--out", str(config.out), "--resume", "--lr", "0.5"]) == 1
    assert "error: --resume: lr is 0.5 but the run was started with 0.001" in capsys.readouterr().err
    again = dataclasses.replace(config, resume=False)
    with pytest.raises(run.OutputDirectoryError, match="pass --resume"):
        run.prepare(again, quiet)
