from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

CORPUS = Path(__file__).resolve().parents[2] / "data" / "distill_corpus"


@pytest.fixture(autouse=True)
def one_thread() -> Iterator[None]:
    """Two shared cores: one torch thread per test, restored after."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def tokenizer():  # noqa: ANN201 - a transformers fast tokenizer
    """The bert-base-uncased WordPiece tokenizer the tiny models use."""
    import transformers

    from tests.tiny_models import minilm_dir

    return transformers.AutoTokenizer.from_pretrained(minilm_dir())


@pytest.fixture(scope="session")
def vocabulary(tokenizer):  # noqa: ANN001, ANN201 - a Vocabulary
    from model_export.distill.teacher import check_vocabulary

    return check_vocabulary(tokenizer, 30522, "test")


@pytest.fixture(scope="session")
def corpus_dir() -> Path:
    return CORPUS


@pytest.fixture(scope="session")
def bert_teacher(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A random 4-layer BertForMaskedLM with the bert-base-uncased tokenizer."""
    from tests.tiny_models import build_tiny_checkpoint

    return build_tiny_checkpoint(tmp_path_factory.mktemp("teacher") / "bert-mlm", "bert-mlm", layers=4)


@pytest.fixture(scope="session")
def distilbert_teacher(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from tests.tiny_models import build_tiny_checkpoint

    return build_tiny_checkpoint(tmp_path_factory.mktemp("teacher") / "distilbert-mlm", "distilbert-mlm", layers=4)


def small_config(tmp_path: Path, teacher: Path, **overrides: Any):  # noqa: ANN201 - a DistillConfig
    """Test-sized options: small batches, per-step log records, enough held-out text to measure."""
    from model_export.distill.config import DistillConfig

    config = DistillConfig(
        teacher=str(teacher), corpus=(str(CORPUS),), out=tmp_path / "student", batch_tokens=512, heldout_percent=15,
        eval_sentences=300, log_every=1, checkpoint_every=1000, max_steps=20, lr=1e-3, threads=1,
    )
    return dataclasses.replace(config, **overrides)


def quiet(message: str) -> None:
    """A `say` that drops progress lines."""
