"""Write a directory atomically: build it in a hidden sibling, rename it into place when complete.

Shared by the exporter (model directories) and the distiller (checkpoint directories): a failed or
interrupted run leaves the previous directory, or nothing, where the output belongs.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

from model_export.errors import OutputDirectoryError


def check_output_dir(out_dir: Path, marker: str, kind: str) -> None:
    """Refuse an output that exists and is neither empty nor a previous output (holding `marker`)."""
    if out_dir.exists():
        if not out_dir.is_dir():
            raise OutputDirectoryError(f"{out_dir}: exists and is not a directory")
        if any(out_dir.iterdir()) and not (out_dir / marker).is_file():
            raise OutputDirectoryError(f"{out_dir}: exists, is not empty and is not a {kind}; refusing to replace it")
    check_writable(out_dir.parent)


def check_writable(directory: Path) -> None:
    """`directory` exists and is writable, or could be created (its nearest existing ancestor is)."""
    existing = directory.absolute()
    while not existing.exists():
        existing = existing.parent
    if not existing.is_dir():
        raise OutputDirectoryError(f"{directory}: cannot write there: {existing} is not a directory")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise OutputDirectoryError(f"{directory}: cannot write there: {existing} is not writable")


def make_staging_dir(out_dir: Path, marker: str, kind: str) -> Path:
    """An empty hidden sibling of `out_dir` to build in (after check_output_dir)."""
    check_output_dir(out_dir, marker, kind)
    try:
        out_dir.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", suffix=".partial", dir=out_dir.parent))
        staging.chmod(0o755)  # mkdtemp's 0700 would survive the rename and lock out the server's user
        return staging
    except OSError as error:
        raise OutputDirectoryError(f"{out_dir}: cannot write there: {error.strerror or error}") from None


def move_into_place(staging: Path, out_dir: Path) -> None:
    """Replace `out_dir` (absent, empty, or a previous output) with `staging`."""
    previous = None
    try:
        if out_dir.exists():
            previous = out_dir.with_name(f".{out_dir.name}.previous-{staging.name}")
            out_dir.rename(previous)
        staging.rename(out_dir)
    except OSError as error:
        if previous is not None and not out_dir.exists():
            previous.rename(out_dir)
        raise OutputDirectoryError(f"{out_dir}: cannot write there: {error.strerror or error}") from None
    if previous is not None:
        shutil.rmtree(previous, ignore_errors=True)
