from __future__ import annotations

from pathlib import Path

import pytest

TINY_KINDS = ("distilbert-mlm", "bert-mlm", "bert-encoder")


@pytest.fixture(scope="session")
def tiny_checkpoints(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    from tests.tiny_models import build_tiny_checkpoint

    root = tmp_path_factory.mktemp("tiny-ckpt")
    return {kind: build_tiny_checkpoint(root / kind, kind) for kind in TINY_KINDS}


@pytest.fixture(scope="session")
def tiny_exports(tmp_path_factory: pytest.TempPathFactory, tiny_checkpoints: dict[str, Path]) -> dict[str, Path]:
    """Each tiny checkpoint exported with every variant."""
    from model_export.pipeline import export_model

    root = tmp_path_factory.mktemp("tiny-export")
    for kind, checkpoint in tiny_checkpoints.items():
        export_model(str(checkpoint), root / kind, progress=lambda message: None)
    return {kind: root / kind for kind in TINY_KINDS}


@pytest.fixture(params=TINY_KINDS)
def tiny_kind(request: pytest.FixtureRequest) -> str:
    return request.param
