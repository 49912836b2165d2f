"""Bad input to `python -m model_export.distill`: one `error:` line, exit 1, nothing written."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from model_export.distill.__main__ import main
from tests.model_export.distill.conftest import CORPUS


def tiny_bert(directory: Path, kind: str, vocab_size: int = 30522) -> Path:
    import torch
    import transformers

    from tests.tiny_models import write_tokenizer

    torch.manual_seed(0)
    config = transformers.BertConfig(vocab_size=vocab_size, hidden_size=16, num_hidden_layers=2, num_attention_heads=2,
                                     intermediate_size=32, max_position_embeddings=64)
    model = transformers.BertForMaskedLM(config) if kind == "mlm" else transformers.BertModel(config)
    directory.mkdir(parents=True)
    model.save_pretrained(directory)
    write_tokenizer(directory)
    return directory


def run_main(*args: str) -> int:
    return main([*args, "--threads", "1", "--max-steps", "1"])


def assert_one_error_line(capsys: pytest.CaptureFixture[str], *words: str) -> None:
    errors = [line for line in capsys.readouterr().err.splitlines() if not line.startswith("[distill] ")]
    assert len(errors) == 1 and errors[0].startswith("error: "), errors
    for word in words:
        assert word in errors[0]


@pytest.mark.parametrize(
    ("case", "words"),
    [
        ("encoder-teacher", ["a BertModel, not a masked-LM"]),
        ("tokenizer-mismatch", ["the tokenizer has 30522 tokens but the model's vocabulary has 1000 rows"]),
        ("missing-teacher", ["no such directory, and not a hub id"]),
        ("empty-corpus", ["no training text"]),
        ("missing-corpus", ["no-such-corpus: no such file or directory"]),
        ("no-text-files", ["no text files"]),
        ("unwritable-output", ["cannot write there", "is not a directory"]),
        ("foreign-output", ["is not empty and is not a distilled checkpoint directory"]),
        ("resume-without-checkpoint", ["--resume: no checkpoint"]),
        ("bad-option", ["--temperature must be positive"]),
        ("bad-layers", ["--student-layers 3 exceeds the teacher's 2 layers"]),
        *([("no-cuda", ["--device cuda: torch sees no CUDA device"])] if not torch.cuda.is_available() else []),
    ],
)
def test_bad_input_is_one_line_and_writes_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], case: str, words: list[str]
) -> None:
    inputs = tmp_path / "inputs"
    teacher = tiny_bert(inputs / "teacher", "encoder" if case == "encoder-teacher" else "mlm",
                        vocab_size=1000 if case == "tokenizer-mismatch" else 30522)
    corpus = str(CORPUS)
    if case == "empty-corpus":
        (inputs / "empty").mkdir()
        (inputs / "empty" / "blank.txt").write_text("\n \n")
        corpus = str(inputs / "empty")
    elif case == "missing-corpus":
        corpus = str(inputs / "no-such-corpus")
    elif case == "no-text-files":
        (inputs / "binary").mkdir()
        (inputs / "binary" / "data.bin").write_bytes(b"\0\1")
        corpus = str(inputs / "binary")
    outputs = tmp_path / "outputs"
    outputs.mkdir()
    out = outputs / "student"
    if case == "unwritable-output":
        (outputs / "a-file").write_text("")
        out = outputs / "a-file" / "student"
    elif case == "foreign-output":
        out.mkdir()
        (out / "notes.txt").write_text("mine")
    extra = {
        "missing-teacher": [], "resume-without-checkpoint": ["--resume"], "bad-option": ["--temperature", "0"],
        "bad-layers": ["--student-layers", "3"], "no-cuda": ["--device", "cuda"],
    }.get(case, [])
    before = sorted(p.relative_to(outputs) for p in outputs.rglob("*"))
    teacher_arg = "./no/such/teacher" if case == "missing-teacher" else str(teacher)
    capsys.readouterr()  # building the inputs printed progress bars
    assert run_main(teacher_arg, corpus, "--out", str(out), *extra) == 1
    assert_one_error_line(capsys, *words)
    assert sorted(p.relative_to(outputs) for p in outputs.rglob("*")) == before, "nothing written"


def test_help_lists_the_issue_options(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["--help"])
    text = capsys.readouterr().out
    for option in ("--max-steps", "--student-layers", "--temperature", "--alpha-ce", "--alpha-mlm", "--alpha-cos",
                   "--freeze", "--resume", "--seed", "--teacher-free", "--batch-tokens", "--accumulate"):
        assert option in text
