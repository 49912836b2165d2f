"""Data files that ship inside the package (package-data in pyproject.toml), so the bench and the
STS-B tests need nothing outside the repository."""

from __future__ import annotations

from pathlib import Path

# STS Benchmark, English test split; source and licence in stsb/README.md and stsb/LICENSE.
STSB_TEST_CSV = Path(__file__).resolve().parent / "stsb" / "stsb-en-test.csv"
# bert-base-uncased's WordPiece vocabulary (distilbert-base-uncased and all-MiniLM-L6-v2 share it).
BERT_UNCASED_VOCAB = Path(__file__).resolve().parent / "bert_uncased" / "vocab.txt"
# The benchmark's mixed-length English texts (from STS-B and Austen); provenance in bench/README.md.
BENCH_TEXTS = Path(__file__).resolve().parent / "bench" / "bench-texts.jsonl"


def stsb_test_csv() -> Path:
    """The STS-B test split; a missing file is an error that names it, never a stand-in."""
    return _shipped(STSB_TEST_CSV, "STS-B test data", "stsb")


def bert_uncased_vocab() -> Path:
    """bert-base-uncased's vocab.txt; a missing file is an error that names it."""
    return _shipped(BERT_UNCASED_VOCAB, "the bert-base-uncased vocabulary", "bert_uncased")


def bench_texts_file() -> Path:
    """The benchmark's text set; a missing file is an error that names it, never a stand-in."""
    return _shipped(BENCH_TEXTS, "the benchmark's text set", "bench")


def _shipped(path: Path, what: str, folder: str) -> Path:
    if not path.is_file():
        raise FileNotFoundError(
            f"{what} is missing: {path} (it ships with the package as app/data/{folder}/; "
            "reinstall, or restore it from version control)"
        )
    return path
