"""How much the export command lines say: their own progress lines always; the INFO logs and progress
bars of onnxruntime, transformers and torch only when asked (--verbose), since on a first run they
bury the progress lines (one INFO line per fusion, per removed node, per saved file)."""

from __future__ import annotations

import argparse
import logging
import os
import sys

VERBOSE_HELP = "also show onnxruntime's, transformers' and torch's INFO logs (default: their warnings and errors only)"


def add_verbose_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--verbose", "-v", action="store_true", help=VERBOSE_HELP)


def configure_logging(verbose: bool) -> None:
    """Call before importing transformers: it reads TRANSFORMERS_VERBOSITY once, at import."""
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "info" if verbose else "error")
    if not verbose:
        os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    logging.basicConfig(
        level=logging.INFO if verbose else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
        force=True,
    )
