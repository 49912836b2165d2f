from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest


def run_cli(repo_root: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    return subprocess.run(
        [sys.executable, "-m", "model_export", *args], cwd=repo_root, env=env, capture_output=True, text=True, timeout=300
    )


def assert_one_line_error(result: subprocess.CompletedProcess[str], *words: str) -> None:
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    errors = [line for line in result.stderr.splitlines() if not line.startswith("[export] ")]
    assert len(errors) == 1, result.stderr
    assert errors[0].startswith("error: ")
    for word in words:
        assert word in errors[0]


def gpt2_checkpoint(directory: Path) -> Path:
    import transformers

    transformers.GPT2Config(n_layer=1, n_head=2, n_embd=8).save_pretrained(directory)
    return directory


@pytest.mark.parametrize(
    "case, words",
    [
        ("unknown-hub-id", ["no-such-org/no-such-model"]),
        ("unknown-path", ["./no/such/dir"]),
        ("no-weights", ["no weights"]),
        ("gpt2", ["gpt2", "not supported"]),
    ],
)
def test_bad_source_is_one_line_and_leaves_nothing(repo_root: Path, tmp_path: Path, case: str, words: list[str]) -> None:
    source = {"unknown-hub-id": "no-such-org/no-such-model", "unknown-path": "./no/such/dir"}.get(case)
    if case == "no-weights":
        source = str(gpt2_checkpoint(tmp_path / "src"))
        (tmp_path / "src" / "config.json").write_text('{"model_type": "bert", "architectures": ["BertModel"]}')
    elif case == "gpt2":
        source = str(gpt2_checkpoint(tmp_path / "src"))
    out_parent = tmp_path / "out"
    out_parent.mkdir()
    result = run_cli(repo_root, source, "--out", str(out_parent / "model"))
    assert_one_line_error(result, *words)
    assert list(out_parent.iterdir()) == []


def test_unwritable_output_is_one_line(repo_root: Path, tiny_checkpoints, tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    result = run_cli(repo_root, str(tiny_checkpoints["bert-encoder"]), "--out", str(blocker / "model"))
    assert_one_line_error(result, "cannot write")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a-file"]


def test_bad_option_is_one_line(repo_root: Path, tiny_checkpoints, tmp_path: Path) -> None:
    result = run_cli(repo_root, str(tiny_checkpoints["bert-encoder"]), "--out", str(tmp_path / "m"), "--variants", "fp8")
    assert_one_line_error(result, "fp8")


def test_broken_sentence_transformers_config_is_one_line(repo_root: Path, tiny_checkpoints, tmp_path: Path) -> None:
    source = Path(shutil.copytree(tiny_checkpoints["bert-encoder"], tmp_path / "src"))
    (source / "sentence_bert_config.json").write_text('{"max_seq_length": "long"}')
    result = run_cli(repo_root, str(source), "--out", str(tmp_path / "model"))
    assert result.returncode == 1
    assert_one_line_error(result, "max_seq_length 'long'", "--max-length")
    assert not (tmp_path / "model").exists()
    assert run_cli(repo_root, str(source), "--out", str(tmp_path / "model"), "--max-length", "64", "--variants", "fp32").returncode == 0


def test_export_prints_stages_and_the_receipt(repo_root: Path, tiny_checkpoints, tmp_path: Path) -> None:
    from model_export.manifest import verify_model_dir

    out = tmp_path / "model"
    result = run_cli(repo_root, str(tiny_checkpoints["bert-mlm"]), "--out", str(out), "--variants", "fp32,int8", "--model-id", "tiny")
    assert result.returncode == 0, result.stderr
    for stage in ("loading", "exporting", "fusing", "quantizing", "validating", "wrote"):
        assert f"[export] {stage}" in result.stderr
    assert "Traceback" not in result.stderr and "WARNING" not in result.stderr
    manifest = verify_model_dir(out)
    assert manifest.model_id == "tiny"
    assert set(manifest.variants) <= {"fp32", "int8"}
    assert "| fp32 |" in result.stdout and "Attention" in result.stdout
