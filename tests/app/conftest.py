from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from model_export import manifest as m
from tests.tiny_models import write_tokenizer

FAKE_HIDDEN = 8
# Fill-mask scores: onnxruntime against PyTorch on the same checkpoint.
SCORE_TOLERANCE = 1e-4


def write_fake_model_dir(directory: Path, model_id: str, tasks: tuple[str, ...] = ("embed", "fill-mask")) -> Path:
    """A model directory whose manifest and tokenizer are real but whose graph is a placeholder:
    enough for the server to start with a FakeBackend, in milliseconds."""
    directory.mkdir(parents=True, exist_ok=True)
    write_tokenizer(directory)
    (directory / "model.fp32.onnx").write_bytes(b"placeholder, never loaded")
    parity = m.Parity(embedding_max_abs_diff=0.0, embedding_min_cosine=1.0, sentences=0, gate="none (fake)")
    token = m.SpecialToken
    manifest = m.Manifest(
        model_id=model_id,
        source=m.Source(kind="local", id=str(directory), revision="abc123", weights_sha256="0" * 64),
        arch=m.Architecture(
            model_type="distilbert",
            architecture="DistilBertForMaskedLM" if "fill-mask" in tasks else "DistilBertModel",
            num_layers=1, num_heads=1, hidden_size=FAKE_HIDDEN, vocab_size=30522,
        ),
        special_tokens=m.SpecialTokens(
            cls=token(id=101, token="[CLS]"), sep=token(id=102, token="[SEP]"), pad=token(id=0, token="[PAD]"),
            mask=token(id=103, token="[MASK]"), unk=token(id=100, token="[UNK]"),
        ),
        max_length=32,
        pooling="mean",
        tasks=list(tasks),
        tokenizer_sha256=m.sha256_file(directory / "tokenizer.json"),
        variants={
            "fp32": m.Variant(
                file="model.fp32.onnx", sha256=m.sha256_file(directory / "model.fp32.onnx"), dtype="float32",
                opset=17, onnxruntime_version="0", fused_ops={}, fusion_asserted=False, parity=parity,
                intended_providers=["CPUExecutionProvider"],
            )
        },
        exporter_version="test",
        created_at="2026-01-01T00:00:00Z",
    )
    m.write_manifest(directory, manifest)
    return directory


@pytest.fixture(scope="session")
def fake_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fake masked-LM model directory (embed and fill-mask), id `fake-model`."""
    return write_fake_model_dir(tmp_path_factory.mktemp("fake-model") / "model", "fake-model")


@pytest.fixture(scope="session")
def fake_encoder_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fake embed-only model directory, id `fake-encoder`."""
    return write_fake_model_dir(tmp_path_factory.mktemp("fake-encoder") / "model", "fake-encoder", ("embed",))


def wait_ready(client: TestClient, timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if client.get("/ready").status_code == 200:
            return
        time.sleep(0.02)
    raise AssertionError(f"not ready after {timeout_s}s: {client.get('/ready').json()}")


@contextmanager
def serving(app: FastAPI, ready: bool = True) -> Iterator[TestClient]:
    """The app with its lifespan running (start-up, warm-up, drain on exit)."""
    with TestClient(app) as client:
        if ready:
            wait_ready(client)
        yield client


def assert_same_answer(ours: Any, theirs: Any, where: str = "") -> None:
    """Same nesting and keys; ids, token strings and sequences exact; scores within tolerance."""
    if isinstance(theirs, list):
        assert isinstance(ours, list) and len(ours) == len(theirs), f"{where}: {ours!r} vs {theirs!r}"
        for index, (a, b) in enumerate(zip(ours, theirs, strict=True)):
            assert_same_answer(a, b, f"{where}[{index}]")
        return
    assert isinstance(ours, dict), f"{where}: {ours!r} vs {theirs!r}"
    assert set(ours) == {"score", "token", "token_str", "sequence"}, where
    assert ours["token"] == int(theirs["token"]), where
    assert ours["token_str"] == theirs["token_str"], where
    assert ours["sequence"] == theirs["sequence"], where
    assert abs(ours["score"] - float(theirs["score"])) <= SCORE_TOLERANCE, where
