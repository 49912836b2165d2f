"""Data files that ship inside the package (package-data in pyproject.toml), so the bench and the
STS-B tests need nothing outside the repository."""

from __future__ import annotations

from pathlib import Path

# STS Benchmark, English test split; source and licence in stsb/README.md and stsb/LICENSE.
STSB_TEST_CSV = Path(__file__).resolve().parent / "stsb" / "stsb-en-test.csv"


def stsb_test_csv() -> Path:
    """The STS-B test split; a missing file is an error that names it, never a stand-in."""
    if not STSB_TEST_CSV.is_file():
        raise FileNotFoundError(
            f"STS-B test data is missing: {STSB_TEST_CSV} (it ships with the package as app/data/stsb/; "
            "reinstall, or restore it from version control)"
        )
    return STSB_TEST_CSV
