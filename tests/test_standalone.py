"""The repository stands alone: nothing it builds, runs or tests reaches into a `shared` folder
beside the checkout (data it needs, such as STS-B, ships in app/data/)."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

from tests.conftest import require_tool

ROOT = Path(__file__).resolve().parent.parent
SCOPE = ["app", "model_export", "tests", "Makefile", ".ci", "Dockerfile", "pyproject.toml"]
# A path component named `shared`, however it is spelled: a parent-relative path into it, a
# pathlib join with it, or a relative path starting with it.
OUTSIDE = re.compile(r"""\.\./shared\b|["'/]shared["'/]""")


def tracked_files() -> list[Path]:
    listing = subprocess.run(
        [require_tool("git"), "ls-files", "-z", "--", *SCOPE], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout
    return [ROOT / name for name in listing.split("\0") if name]


def test_no_tracked_file_reads_outside_the_repository() -> None:
    files = [path for path in tracked_files() if path != Path(__file__).resolve()]
    assert any(path.name == "server.py" for path in files), "git ls-files found nothing to check"
    offenders = []
    for path in files:
        text = path.read_bytes().decode("utf-8", errors="ignore")
        for number, line in enumerate(text.splitlines(), start=1):
            if OUTSIDE.search(line):
                offenders.append(f"{path.relative_to(ROOT)}:{number}: {line.strip()}")
    assert not offenders, "reads outside the repository:\n" + "\n".join(offenders)
