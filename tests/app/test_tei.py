"""TEI's extras: /tokenize and /decode in TEI's shapes, and timing headers on inference responses."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from app.server import create_app
from app.settings import Settings
from tests.app.fakes import FakeBackend, factory
from tests.app.conftest import FAKE_HIDDEN, serving

TIMING_HEADERS = ("x-tokenization-time", "x-queue-time", "x-inference-time", "x-total-time")


@pytest.fixture(scope="module")
def client(tiny_mlm_model_dir: Path) -> Iterator[TestClient]:
    settings = Settings(
        model_dir=tiny_mlm_model_dir, providers=["cpu"], intra_op_threads=1, max_inputs_per_request=3,
        max_batch_tokens=512,
    )
    with serving(create_app(settings)) as test_client:
        yield test_client


def test_tokenize_single(client: TestClient) -> None:
    response = client.post("/tokenize", json={"inputs": "Tokenizing works"})
    assert response.status_code == 200, response.text
    tokens = response.json()
    assert len(tokens) == 1
    assert tokens[0][0] == {"id": 101, "text": "[CLS]", "special": True, "start": None, "stop": None}
    assert tokens[0][-1] == {"id": 102, "text": "[SEP]", "special": True, "start": None, "stop": None}
    body = tokens[0][1:-1]
    assert all(not token["special"] for token in body)
    # TEI reports the covered text, so the pieces of a word join back into it.
    assert "".join(token["text"] for token in body[:-1]) == "Tokenizing"
    assert body[-1]["text"] == "works" and (body[-1]["start"], body[-1]["stop"]) == (11, 16)


def test_tokenize_batch_without_special_tokens(client: TestClient) -> None:
    tokens = client.post("/tokenize", json={"inputs": ["a b", "café"], "add_special_tokens": False}).json()
    assert [[token["text"] for token in row] for row in tokens] == [["a", "b"], ["café"]]
    assert not any(token["special"] for row in tokens for token in row)


def test_decode_round_trip(client: TestClient) -> None:
    ids = [token["id"] for token in client.post("/tokenize", json={"inputs": "hello there"}).json()[0]]
    assert client.post("/decode", json={"ids": ids}).json() == ["hello there"]
    assert client.post("/decode", json={"ids": [ids, ids[1:2]], "skip_special_tokens": False}).json() == [
        "[CLS] hello there [SEP]",
        "hello",
    ]


@pytest.mark.parametrize(
    ("path", "body", "status", "fragment"),
    [
        ("/decode", {"ids": [1, 99_999_999]}, 422, "vocabulary"),
        ("/decode", {"ids": [-1]}, 422, "vocabulary"),
        ("/decode", {"ids": [[1], [2**70]]}, 422, "ids 1 has token ids outside the vocabulary"),
        ("/decode", {"ids": ["a"]}, 422, "ids"),
        ("/decode", {"ids": [[1]] * 4}, 422, "at most 3"),
        ("/tokenize", {"inputs": ["a"] * 4}, 422, "at most 3"),
        ("/tokenize", {"inputs": 5}, 422, "inputs"),
    ],
)
def test_errors(client: TestClient, path: str, body: object, status: int, fragment: str) -> None:
    response = client.post(path, json=body)
    assert response.status_code == status, response.text
    assert response.json()["error_type"] == "validation"
    assert fragment in response.json()["error"]


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/embed", {"inputs": "x"}),
        ("/fill-mask", {"inputs": "a [MASK]"}),
        ("/", {"inputs": "x"}),
        ("/", {"inputs": "a [MASK]", "parameters": {}}),
        ("/v1/embeddings", {"input": "x"}),
        ("/embeddings", {"input": [101, 102]}),
    ],
)
def test_inference_responses_carry_timing_headers(client: TestClient, path: str, body: object) -> None:
    response = client.post(path, json=body)
    assert response.status_code == 200, response.text
    values = {name: float(response.headers[name]) for name in TIMING_HEADERS}
    assert all(value >= 0.0 for value in values.values())
    assert values["x-total-time"] >= values["x-inference-time"]


def test_info_has_tei_fields(client: TestClient) -> None:
    info = client.get("/info").json()
    for field in (
        "model_id", "model_sha", "model_dtype", "model_type", "max_concurrent_requests", "max_input_length",
        "max_batch_tokens", "max_batch_requests", "max_client_batch_size", "auto_truncate", "version",
        "tokenization_workers", "sha", "docker_label",
    ):
        assert field in info, field
    assert info["mask_token"] == "[MASK]"  # the widget reads it
    assert info["tokenization_workers"] == 2  # the worker pool's default size


@pytest.mark.parametrize(
    ("environment", "expected"),
    [({}, (None, None)), ({"DISTILSERVE_BUILD_SHA": "0a1b2c", "DISTILSERVE_DOCKER_LABEL": "sha-0a1b2c"}, ("0a1b2c", "sha-0a1b2c"))],
)
def test_info_build_fields_come_from_the_image_environment(
    fake_model_dir: Path,
    monkeypatch: pytest.MonkeyPatch,
    environment: dict[str, str],
    expected: tuple[str | None, str | None],
) -> None:
    for name in ("DISTILSERVE_BUILD_SHA", "DISTILSERVE_DOCKER_LABEL"):
        monkeypatch.delenv(name, raising=False)
    for name, value in environment.items():
        monkeypatch.setenv(name, value)
    backend = FakeBackend(hidden_size=FAKE_HIDDEN, vocab_size=30522, mask_id=103)
    info = TestClient(create_app(Settings(model_dir=fake_model_dir), factory(backend))).get("/info").json()
    assert (info["sha"], info["docker_label"]) == expected
    assert info["model_sha"] == "abc123"  # the model's revision stays in TEI's model_sha


def test_tokenize_refuses_lone_surrogates(client: TestClient) -> None:
    response = client.post(
        "/tokenize", content=b'{"inputs": ["ok", "\\ud800"]}', headers={"content-type": "application/json"}
    )
    assert response.status_code == 422, response.text
    assert response.json() == {
        "error": "input 1 contains a lone surrogate (U+D800) at character 0; send valid Unicode",
        "error_type": "tokenizer",
    }
