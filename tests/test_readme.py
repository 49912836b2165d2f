"""The README's settings table and commands stay true to the code."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_readme_settings_table_is_the_generated_one() -> None:
    generated = subprocess.run(
        [sys.executable, "-m", "app", "--settings-markdown"], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout.strip()
    assert generated, "--settings-markdown printed nothing"
    assert generated in (ROOT / "README.md").read_text(), "README settings table is stale: paste `python -m app --settings-markdown`"


def test_ci_runs_the_readme_test_command() -> None:
    readme = (ROOT / "README.md").read_text()
    ci = (ROOT / ".ci" / "run").read_text()
    assert "make test" in readme and "make serve" in readme
    assert "\nmake test\n" in ci
