"""What `python -m model_export` prints: its own progress lines and summary, the id asked for, and no
third-party INFO logs unless asked for, in the shape the README's sample shows."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.model_export.test_cli import run_cli

README = Path(__file__).resolve().parents[2] / "README.md"
# Lines only a model whose fully quantized int8 misses its gate prints (MiniLM in the README's sample;
# the tiny encoder passes at once): the retry's announcement and the note the manifest keeps of it.
RETRY_ONLY = {"[export] int8", "note:"}
THIRD_PARTY_INFO = re.compile(r"^INFO (?!distilserve)|Fused Attention|Removed \d+ nodes")


@pytest.fixture(scope="module")
def exported(repo_root: Path, tiny_checkpoints: dict[str, Path], tmp_path_factory: pytest.TempPathFactory):
    """The tiny encoder (embeddings only, as the README's MiniLM) exported by the CLI, with a model id."""
    out = tmp_path_factory.mktemp("cli-output") / "model"
    result = run_cli(repo_root, str(tiny_checkpoints["bert-encoder"]), "--out", str(out), "--model-id", "acme/tiny-encoder")
    assert result.returncode == 0, result.stderr
    return out, result


def readme_sample() -> list[str]:
    """The README's code block of export output (the one with `[export]` lines)."""
    blocks = README.read_text().split("```")[1::2]
    (sample,) = [block for block in blocks if "\n[export] " in block]
    return sample.strip("\n").splitlines()


def line_kind(line: str) -> str:
    """What a line is, without its figures: the progress step, a table's row label, the summary head."""
    if line.startswith("[export] "):
        return "[export] " + line.split()[1]
    if line.startswith("|---"):
        return "|---"
    if line.startswith("| "):
        return "| " + line.split("|")[1].strip()
    if line.startswith("note: "):
        return "note:"
    if " -> " in line:
        return "MODEL -> DIR"
    return line


def is_subsequence(needle: list[str], haystack: list[str]) -> bool:
    remaining = iter(haystack)
    return all(item in remaining for item in needle)


def test_model_id_names_the_model_in_the_manifest_and_the_summary(exported) -> None:
    out, result = exported
    assert json.loads((out / "manifest.json").read_text())["model_id"] == "acme/tiny-encoder"
    assert result.stdout.startswith(f"acme/tiny-encoder -> {out}")


def test_stderr_has_only_the_progress_lines_by_default(exported) -> None:
    _, result = exported
    assert "[export] fusing" in result.stderr and "[export]" not in result.stdout
    assert [line for line in result.stderr.splitlines() if THIRD_PARTY_INFO.search(line)] == []
    assert [line for line in result.stderr.splitlines() if not line.startswith("[export] ")] == []


def test_verbose_shows_onnxruntimes_fusion_logs(repo_root: Path, tiny_checkpoints: dict[str, Path], tmp_path: Path) -> None:
    result = run_cli(repo_root, str(tiny_checkpoints["bert-encoder"]), "--out", str(tmp_path / "m"), "--variants", "fp32", "--verbose")
    assert result.returncode == 0, result.stderr
    assert "Fused Attention" in result.stderr


def test_the_readme_sample_has_the_lines_the_command_prints_in_their_order(exported) -> None:
    _, result = exported
    printed = [line_kind(line) for line in (result.stderr + result.stdout).splitlines()]
    sample = [line_kind(line) for line in readme_sample()]
    assert is_subsequence(printed, sample), f"README sample {sample}\nthe command now prints {printed}"
    assert set(sample) - set(printed) <= RETRY_ONLY, "the README shows lines the command no longer prints"
    parity_header = next(line for line in readme_sample() if "emb max abs diff" in line)
    assert parity_header in result.stdout.splitlines(), "the README's parity table has other columns"


def test_a_default_model_build_that_fails_says_why_in_one_line(repo_root: Path, tmp_path: Path) -> None:
    """The server shows this line as the reason it cannot start on a first run."""
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    result = subprocess.run(
        [sys.executable, "-m", "model_export.default_model", "build", "--out", str(blocker / "root")],
        cwd=repo_root, capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 1 and "Traceback" not in result.stderr, result.stderr
    (error,) = [line for line in result.stderr.splitlines() if not line.startswith("[default-model] ")]
    assert error.startswith("error: ") and str(blocker) in error
