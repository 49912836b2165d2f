"""The HTTP API against the tiny DistilBertForMaskedLM exported by the real pipeline, compared with
transformers' fill-mask pipeline and a PyTorch mean-pooling reference on the same checkpoint."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient

from app.server import create_app
from app.settings import Settings
from tests.app.conftest import assert_same_answer, serving


@pytest.fixture(scope="module")
def client(tiny_mlm_model_dir: Path) -> Iterator[TestClient]:
    settings = Settings(
        model_dir=tiny_mlm_model_dir, providers=["cpu"], intra_op_threads=1, max_inputs_per_request=8,
        max_top_k=50, max_body_bytes=64 * 1024, max_batch_tokens=2048,
    )
    with serving(create_app(settings)) as test_client:
        yield test_client


@pytest.fixture(scope="module")
def pipeline(tiny_mlm_checkpoint: Path) -> Any:
    import transformers

    return transformers.pipeline("fill-mask", model=str(tiny_mlm_checkpoint), tokenizer=str(tiny_mlm_checkpoint))


@pytest.mark.parametrize(
    ("inputs", "parameters"),
    [
        ("Paris is the [MASK] of France.", {}),
        ("The [MASK] sat on the [MASK] near the door.", {"top_k": 3}),
        (["The weather is [MASK] today.", "She plays the [MASK] every evening."], {"top_k": 7}),
        (["One [MASK] here.", "Two [MASK] here [MASK]."], {}),
        ("I would like a cup of [MASK].", {"targets": ["tea", "coffee", "water", "milk"], "top_k": 3}),
        ("I would like a cup of [MASK].", {"targets": ["zzyzxq", "tea"]}),  # outside the vocab: first piece
        ("I would like a cup of [MASK].", {"targets": "tea"}),
    ],
    ids=["single", "several-masks", "list", "list-mixed", "targets", "target-outside-vocab", "target-string"],
)
def test_fill_mask_equals_the_transformers_pipeline(
    client: TestClient, pipeline: Any, inputs: str | list[str], parameters: dict[str, Any]
) -> None:
    response = client.post("/fill-mask", json={"inputs": inputs, "parameters": parameters})
    assert response.status_code == 200, response.text
    expected = pipeline(inputs, **parameters)
    assert_same_answer(response.json(), expected)


def test_fill_mask_sends_tei_timing_headers(client: TestClient) -> None:
    response = client.post("/fill-mask", json={"inputs": "A [MASK] test."})
    for header in ("x-tokenization-time", "x-queue-time", "x-inference-time", "x-total-time"):
        assert float(response.headers[header]) >= 0.0
    assert float(response.headers["x-total-time"]) >= float(response.headers["x-inference-time"])


SENTENCES = ["A man is playing a guitar.", "The quick brown fox jumps over the lazy dog near the river bank.", "Hi"]


@pytest.fixture(scope="module")
def torch_embeddings(tiny_mlm_checkpoint: Path) -> np.ndarray:
    import torch
    import transformers

    tokenizer = transformers.AutoTokenizer.from_pretrained(str(tiny_mlm_checkpoint))
    model = transformers.AutoModel.from_pretrained(str(tiny_mlm_checkpoint)).eval()
    batch = tokenizer(SENTENCES, padding=True, return_tensors="pt")
    with torch.no_grad():
        hidden = model(**batch).last_hidden_state
    mask = batch["attention_mask"].unsqueeze(-1).float()
    return ((hidden * mask).sum(1) / mask.sum(1)).numpy()


def test_embed_equals_pytorch_mean_pooling(client: TestClient, torch_embeddings: np.ndarray) -> None:
    raw = np.array(client.post("/embed", json={"inputs": SENTENCES, "normalize": False}).json())
    np.testing.assert_allclose(raw, torch_embeddings, atol=1e-4)
    normalized = np.array(client.post("/embed", json={"inputs": SENTENCES}).json())
    expected = torch_embeddings / np.linalg.norm(torch_embeddings, axis=1, keepdims=True)
    np.testing.assert_allclose(normalized, expected, atol=1e-4)


def test_embed_single_string_and_dimensions(client: TestClient, torch_embeddings: np.ndarray) -> None:
    response = client.post("/embed", json={"inputs": SENTENCES[0], "dimensions": 8})
    vectors = np.array(response.json())
    assert vectors.shape == (1, 8)
    expected = torch_embeddings[0, :8] / np.linalg.norm(torch_embeddings[0, :8])  # truncate, then normalize
    np.testing.assert_allclose(vectors[0], expected, atol=1e-4)


def test_embed_truncation_directions_keep_the_chosen_end(client: TestClient) -> None:
    words = " ".join(f"w{i}" for i in range(200))
    right = client.post("/embed", json={"inputs": words, "truncate": True}).json()
    left = client.post("/embed", json={"inputs": words, "truncate": True, "truncation_direction": "left"}).json()
    head = client.post("/embed", json={"inputs": " ".join(f"w{i}" for i in range(200)), "truncate": True}).json()
    assert right == head and right != left


def test_fill_mask_and_embed_share_batches(tiny_mlm_model_dir: Path) -> None:
    """Concurrent requests of both tasks are answered in fewer batches than inputs. The idle worker
    waits up to 300 ms for company, so this holds on a slow machine and fails if batching is off."""
    import concurrent.futures

    settings = Settings(model_dir=tiny_mlm_model_dir, providers=["cpu"], intra_op_threads=1, max_wait_ms=300)
    bodies = [("/fill-mask", {"inputs": f"Item {i} is [MASK]."}) for i in range(6)]
    bodies += [("/embed", {"inputs": f"Item {i} is here."}) for i in range(6)]
    with serving(create_app(settings)) as client:
        before = _sample(client, "distilserve_batch_size_count")
        with concurrent.futures.ThreadPoolExecutor(12) as pool:
            statuses = list(pool.map(lambda pair: client.post(pair[0], json=pair[1]).status_code, bodies))
        batches = _sample(client, "distilserve_batch_size_count") - before
    assert statuses == [200] * 12
    assert 1 <= batches <= 4, f"12 inputs took {batches} batches"


# Every error case: status and TEI-style body.
LONG = " ".join(["word"] * 200)


@pytest.mark.parametrize(
    ("path", "body", "status", "error_type", "message"),
    [
        ("/fill-mask", {"inputs": "no mask here"}, 422, "validation", r"\[MASK\]"),
        ("/fill-mask", {"inputs": ["a [MASK]", "none"]}, 422, "validation", r"input 1 .*\[MASK\]"),
        ("/fill-mask", {"inputs": "a [MASK]", "parameters": {"top_k": -1}}, 422, "validation", r"top_k.*0 and 50"),
        ("/fill-mask", {"inputs": "a [MASK]", "parameters": {"top_k": 51}}, 422, "validation", r"top_k.*got 51"),
        ("/fill-mask", {"inputs": "a [MASK]", "parameters": {"top_k": "5"}}, 422, "validation", r"top_k"),
        ("/fill-mask", {"inputs": 5}, 422, "validation", r"body\.inputs"),
        ("/fill-mask", {}, 422, "validation", r"body\.inputs.*[Ff]ield required"),
        ("/fill-mask", {"inputs": "a [MASK]", "parameters": {"targets": [""]}}, 422, "validation", r"targets"),
        ("/fill-mask", {"inputs": ""}, 400, "empty", r"empty"),
        # TEI answers an empty input 400; a blank one is answered the same (the schema's pattern says so).
        ("/embed", {"inputs": " \t\u3000"}, 400, "empty", r"input 0 is only whitespace"),
        ("/", {"inputs": ["ok", "\n"]}, 400, "empty", r"input 1 is only whitespace"),
        ("/fill-mask", {"inputs": "a [MASK]", "parameters": {"targets": []}}, 422, "validation",
         r"targets: name at least one target"),
        ("/fill-mask", {"inputs": "a [MASK]", "parameters": {"targets": ["cat", " "]}}, 422, "validation",
         r"targets: target 1 is empty or only whitespace"),
        ("/embed", {"inputs": "x", "dimensions": "8"}, 422, "validation", r"body\.dimensions"),
        ("/embed", {"inputs": []}, 400, "empty", r"empty"),
        ("/embed", {"inputs": ["ok", ""]}, 400, "empty", r"input 1"),
        ("/embed", {"inputs": LONG}, 422, "validation", r"202 tokens.*at most 128"),
        ("/embed", {"inputs": ["x"] * 9}, 422, "validation", r"9 inputs.*at most 8"),
        ("/embed", {"inputs": "x", "dimensions": 33}, 422, "validation", r"dimensions.*1 and 32"),
        ("/embed", {"inputs": "x", "truncation_direction": "up"}, 422, "validation", r"truncation_direction"),
        ("/embed", {"inputs": "x", "normalize": "yes"}, 422, "validation", r"body\.normalize"),
        # 20 masks x top_k 50 would decode 1000 sequences on the event loop; 8 inputs x 50 is the bound.
        ("/fill-mask", {"inputs": "[MASK] " * 20, "parameters": {"top_k": 50}}, 422, "validation",
         r"20 mask tokens x top_k 50 is 1000 candidates.*at most 400"),
        ("/fill-mask", {"inputs": "a [MASK]", "parameters": {"targets": ["\ud800"]}}, 422, "tokenizer",
         r"target contains a lone surrogate"),
        ("/", {"inputs": "a \udfff [MASK]", "parameters": {}}, 422, "tokenizer", r"input 0 contains a lone surrogate"),
        ("/embed", {"inputs": ["ok", "\ud800"]}, 422, "tokenizer", r"input 1 contains a lone surrogate"),
        # A model name is text too: refused like the tokenizer refuses text, never repeated back.
        ("/embed", {"inputs": "x", "model": "a\ud800"}, 422, "tokenizer",
         r"^model contains a lone surrogate \(U\+D800\) at character 1; send valid Unicode$"),
        ("/decode", {"ids": [101], "model": "\udfff"}, 422, "tokenizer", r"^model contains a lone surrogate \(U\+DFFF\)"),
    ],
)
def test_error_cases(
    client: TestClient, path: str, body: dict[str, Any], status: int, error_type: str, message: str
) -> None:
    # json.dumps escapes lone surrogates as \\udXXX, the way a client would send them.
    response = client.post(path, content=json.dumps(body), headers={"content-type": "application/json"})
    assert response.status_code == status, response.text
    payload = response.json()
    assert set(payload) == {"error", "error_type"}
    assert payload["error_type"] == error_type
    assert re.search(message, payload["error"]), payload["error"]


def test_whole_floats_are_integers_as_the_schema_says(client: TestClient) -> None:
    # JSON Schema's integer is any number without a fraction; strict parsing must not refuse 4.0.
    assert len(client.post("/embed", json={"inputs": "x", "dimensions": 4.0}).json()[0]) == 4
    assert len(client.post("/fill-mask", json={"inputs": "a [MASK]", "parameters": {"top_k": 2.0}}).json()) == 2
    assert client.post("/embed", json={"inputs": "x", "dimensions": 4.5}).status_code == 422


def test_fill_mask_candidate_bound_counts_targets(client: TestClient) -> None:
    # 20 masks, but only 2 targets: 40 candidates, well inside the bound.
    body = {"inputs": "[MASK] " * 20, "parameters": {"top_k": 50, "targets": ["cat", "dog"]}}
    response = client.post("/fill-mask", json=body)
    assert response.status_code == 200, response.text
    assert [len(candidates) for candidates in response.json()] == [2] * 20


def test_malformed_json_is_422(client: TestClient) -> None:
    response = client.post("/embed", content=b'{"inputs": ', headers={"content-type": "application/json"})
    assert response.status_code == 422
    assert response.json()["error_type"] == "validation" and "JSON" in response.json()["error"]


def test_body_over_the_limit_is_413(client: TestClient) -> None:
    response = client.post("/embed", json={"inputs": "x" * (70 * 1024)})
    assert response.status_code == 413
    assert response.json() == {"error": "request body over the 65536-byte limit", "error_type": "payload_too_large"}


def test_chunked_body_over_the_limit_is_413(client: TestClient) -> None:
    def chunks() -> Iterator[bytes]:
        yield b'{"inputs": "'
        for _ in range(80):
            yield b"x" * 1024
        yield b'"}'

    response = client.post("/embed", content=chunks(), headers={"content-type": "application/json"})
    assert response.status_code == 413 and response.json()["error_type"] == "payload_too_large"


def test_unknown_route_is_404_in_the_same_shape(client: TestClient) -> None:
    response = client.get("/nowhere")
    assert response.status_code == 404 and response.json()["error_type"] == "not_found"


def test_health_ready_info(client: TestClient) -> None:
    assert client.get("/health").json() == {"status": "ok"}
    assert client.get("/ready").json() == {"ready": True}
    info = client.get("/info").json()
    assert info["model_id"] == "tiny-distilbert-mlm"
    assert info["tasks"] == ["embed", "fill-mask"]
    assert info["variant"] == "fp32" and info["model_dtype"] == "float32"
    assert info["providers"] == ["CPUExecutionProvider"]
    assert info["max_input_length"] == 128 and info["max_batch_tokens"] == 2048
    assert info["max_client_batch_size"] == 8
    assert info["demo"] is False and info["model_selection_reason"]
    assert re.fullmatch(r"\d+\.\d+\.\d+.*", info["version"])


def _sample(client: TestClient, name: str, labels: str = "") -> float:
    """The sum of `name`'s samples whose labels include every `key="value"` in `labels`."""
    text = client.get("/metrics").text
    wanted = [pair for pair in labels.split(",") if pair]
    total = 0.0
    for match in re.finditer(r"(?m)^" + re.escape(name) + r"(?:\{([^}]*)\})? ([0-9.e+-]+)$", text):
        present = (match.group(1) or "").split(",")
        if all(pair in present for pair in wanted):
            total += float(match.group(2))
    return total


def test_probes_answer_head(client: TestClient) -> None:
    for path in ("/health", "/ready"):
        get, head = client.get(path), client.head(path)
        assert head.status_code == get.status_code == 200
        assert head.content == b"" and head.headers["content-type"] == get.headers["content-type"]


def test_metrics_are_present_and_move(client: TestClient) -> None:
    text = client.get("/metrics").text
    for name in (
        "distilserve_requests_total", "distilserve_stage_duration_seconds_bucket", "distilserve_batch_size_bucket",
        "distilserve_batch_tokens_bucket", "distilserve_batch_padding_ratio_bucket", "distilserve_queue_depth",
        "distilserve_provider_info", "distilserve_model_info", "distilserve_ready",
    ):
        assert name in text, name
    model = 'model="tiny-distilbert-mlm"'
    assert f'distilserve_provider_info{{{model},provider="CPUExecutionProvider",rank="0"}} 1.0' in text
    ok_before = _sample(client, "distilserve_requests_total", f'route="/embed",status="200",{model}')
    bad_before = _sample(client, "distilserve_failures_total", f'error_type="empty",{model}')
    inference_before = _sample(client, "distilserve_stage_duration_seconds_count", f'{model},stage="inference"')
    tokens_before = _sample(client, "distilserve_batch_tokens_sum", model)
    client.post("/embed", json={"inputs": ["one sentence", "and another one"]})
    client.post("/embed", json={"inputs": []})
    assert _sample(client, "distilserve_requests_total", f'route="/embed",status="200",{model}') == ok_before + 1
    assert _sample(client, "distilserve_failures_total", f'error_type="empty",{model}') == bad_before + 1
    assert _sample(client, "distilserve_stage_duration_seconds_count", f'{model},stage="inference"') == inference_before + 1
    assert _sample(client, "distilserve_batch_tokens_sum", model) > tokens_before
    assert _sample(client, "distilserve_ready", model) == 1.0


@pytest.mark.parametrize("clean_up", [True, False], ids=["clean-up-on", "clean-up-off"])
def test_fill_mask_follows_the_checkpoints_decode_clean_up(
    tmp_path_factory: pytest.TempPathFactory, clean_up: bool
) -> None:
    """clean_up_tokenization_spaces lives in tokenizer_config.json, not tokenizer.json: the manifest must
    carry it, or `sequence` differs from the pipeline's for checkpoints that set it."""
    import json

    import transformers

    from model_export.pipeline import ExportOptions, export_model
    from tests.tiny_models import build_tiny_checkpoint

    root = tmp_path_factory.mktemp(f"clean-up-{clean_up}")
    checkpoint = build_tiny_checkpoint(root / "checkpoint", "distilbert-mlm", seed=3, layers=1)
    config_path = checkpoint / "tokenizer_config.json"
    config_path.write_text(json.dumps({**json.loads(config_path.read_text()), "clean_up_tokenization_spaces": clean_up}))
    manifest = export_model(str(checkpoint), root / "model", ExportOptions(variants=("fp32",)), progress=lambda _: None)
    assert manifest.clean_up_tokenization_spaces is clean_up

    text = "I'm sure it isn't the [MASK] , right ?"
    expected = transformers.pipeline("fill-mask", model=str(checkpoint))(text, top_k=3)
    settings = Settings(model_dir=root / "model", providers=["cpu"], intra_op_threads=1, warmup=False)
    with serving(create_app(settings)) as client:
        response = client.post("/fill-mask", json={"inputs": text, "parameters": {"top_k": 3}})
    assert response.status_code == 200, response.text
    assert_same_answer(response.json(), expected)
    assert ("i'm" in expected[0]["sequence"]) is clean_up  # the two cases really differ
