"""Typed export errors. Each carries a one-line message the CLI prints as is (no traceback)."""

from __future__ import annotations


class ExportError(Exception):
    """Base class: the export cannot go on; `str(error)` is one line that says why."""


class SourceNotFoundError(ExportError):
    """The SOURCE is neither a local checkpoint directory nor a reachable hub id."""


class MissingFilesError(ExportError):
    """The checkpoint lacks a file the export needs (config, weights, tokenizer)."""


class UnsupportedArchitectureError(ExportError):
    """The checkpoint is not a DistilBERT or BERT encoder."""


class InvalidOptionError(ExportError):
    """An ExportOptions value (or CLI flag) is out of range, or a stage was asked for something it does not make."""


class OutputDirectoryError(ExportError):
    """The output directory cannot be written, or would overwrite something that is not a model directory."""


class FusionError(ExportError):
    """The onnxruntime optimizer did not fuse what the server relies on."""

    def __init__(self, missing: list[str], counts: dict[str, int]) -> None:
        self.missing = missing
        self.counts = counts
        found = ", ".join(f"{op}={count}" for op, count in sorted(counts.items())) or "none"
        super().__init__(
            f"fusion incomplete: {'; '.join(missing)} (fused ops: {found}); "
            "pass --allow-unfused to export anyway"
        )


class ParityError(ExportError):
    """No requested variant passed its parity gate against PyTorch."""


class OutputMismatchError(ExportError):
    """An exported graph's output is not what the server reads it as (not a tolerance miss: a wrong graph)."""


class NotMaskedLMError(UnsupportedArchitectureError):
    """A distillation teacher that has no masked-LM head (a plain encoder, or another task's head)."""


class TokenizerMismatchError(ExportError):
    """The tokenizer does not fit the model: missing special tokens, or ids beyond the vocabulary."""


class EmptyCorpusError(ExportError):
    """The training corpus has no files, no text, or too little to hold some out for evaluation."""
