"""OpenAI embeddings: the pure pieces (input split, base64, response) and the routes on the tiny model."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient
from pydantic import ValidationError

from app.errors import EmptyInput
from app.routes.openai import (
    EmbeddingsRequest,
    EmbeddingsResponse,
    encode_base64,
    response_content,
    split_input,
)
from app.server import create_app
from app.settings import Settings
from tests.app.conftest import serving

TEXTS = ["The cat sat on the mat.", "Embeddings map text to vectors."]


@pytest.fixture(scope="module")
def client(tiny_mlm_model_dir: Path) -> Iterator[TestClient]:
    settings = Settings(
        model_dir=tiny_mlm_model_dir, providers=["cpu"], intra_op_threads=1, max_inputs_per_request=4,
        max_input_length=16, max_batch_tokens=256,
    )
    with serving(create_app(settings)) as test_client:
        yield test_client


def embed(client: TestClient, inputs: list[str]) -> np.ndarray:
    response = client.post("/embed", json={"inputs": inputs, "normalize": True})
    assert response.status_code == 200, response.text
    return np.asarray(response.json(), dtype=np.float32)


def token_ids(client: TestClient, text: str) -> list[int]:
    return [token["id"] for token in client.post("/tokenize", json={"inputs": text}).json()[0]]


def assert_openai_error(response: object, status: int, code: str, *fragments: str) -> None:
    assert response.status_code == status, response.text  # type: ignore[attr-defined]
    error = response.json()["error"]  # type: ignore[attr-defined]
    assert set(error) == {"message", "type", "code"}
    assert error["code"] == code
    assert error["type"] == "invalid_request_error"
    for fragment in fragments:
        assert fragment in error["message"]


class TestRoutes:
    @pytest.mark.parametrize("path", ["/v1/embeddings", "/embeddings"])
    def test_float_equals_normalized_embed(self, client: TestClient, path: str) -> None:
        model = client.get("/info").json()["model_id"]
        response = client.post(path, json={"input": TEXTS, "model": model, "encoding_format": "float"})
        assert response.status_code == 200, response.text
        body = response.json()
        assert body["model"] == model
        assert [item["index"] for item in body["data"]] == [0, 1]
        got = np.asarray([item["embedding"] for item in body["data"]], dtype=np.float32)
        np.testing.assert_allclose(got, embed(client, TEXTS), atol=1e-6)
        tokens = sum(len(token_ids(client, text)) for text in TEXTS)
        assert body["usage"] == {"prompt_tokens": tokens, "total_tokens": tokens}

    def test_base64_is_little_endian_float32(self, client: TestClient) -> None:
        body = client.post("/v1/embeddings", json={"input": TEXTS[0], "encoding_format": "base64"}).json()
        decoded = np.frombuffer(base64.b64decode(body["data"][0]["embedding"]), dtype="<f4")
        np.testing.assert_allclose(decoded, embed(client, [TEXTS[0]])[0], atol=1e-6)

    def test_unknown_model_is_model_not_found(self, client: TestClient) -> None:
        response = client.post("/v1/embeddings", json={"input": "x", "model": "text-embedding-3-small"})
        assert response.status_code == 404
        error = response.json()["error"]
        assert error["code"] == "model_not_found" and error["type"] == "invalid_request_error"
        assert "text-embedding-3-small" in error["message"] and client.get("/info").json()["model_id"] in error["message"]

    def test_model_defaults_to_the_served_one(self, client: TestClient) -> None:
        body = client.post("/v1/embeddings", json={"input": "x"}).json()
        assert body["model"] == client.get("/info").json()["model_id"]

    def test_token_ids_equal_text(self, client: TestClient) -> None:
        ids = token_ids(client, TEXTS[1])
        for value in (ids, ids[1:-1], [ids, ids[1:-1]]):
            body = client.post("/v1/embeddings", json={"input": value}).json()
            for item in body["data"]:
                np.testing.assert_allclose(item["embedding"], embed(client, [TEXTS[1]])[0], atol=1e-5)
            assert body["usage"]["prompt_tokens"] == len(ids) * len(body["data"])

    def test_dimensions_truncate_then_renormalize(self, client: TestClient) -> None:
        body = client.post("/v1/embeddings", json={"input": TEXTS[0], "dimensions": 5}).json()
        got = np.asarray(body["data"][0]["embedding"])
        raw = np.asarray(client.post("/embed", json={"inputs": TEXTS[0], "normalize": False}).json()[0])[:5]
        np.testing.assert_allclose(got, raw / np.linalg.norm(raw), atol=1e-5)

    def test_timing_headers(self, client: TestClient) -> None:
        response = client.post("/v1/embeddings", json={"input": TEXTS})
        for name in ("x-tokenization-time", "x-queue-time", "x-inference-time", "x-total-time"):
            assert float(response.headers[name]) >= 0.0

    def test_client_mistakes_are_4xx_in_openai_style(self, client: TestClient) -> None:
        hidden = client.get("/info").json()["hidden_size"]
        assert_openai_error(
            client.post("/v1/embeddings", json={"input": "x", "dimensions": hidden + 1}), 422, "validation",
            "dimensions", str(hidden),
        )
        assert_openai_error(client.post("/v1/embeddings", json={"input": []}), 400, "empty", "empty")
        assert_openai_error(client.post("/embeddings", json={"input": [""]}), 400, "empty")
        assert_openai_error(client.post("/embeddings", json={"input": ["ok", " \n"]}), 400, "empty", "blank")
        assert_openai_error(client.post("/v1/embeddings", json={"input": "x", "dimensions": "8"}), 422, "validation", "dimensions")
        assert_openai_error(client.post("/v1/embeddings", json={"input": [1, "a"]}), 422, "validation", "input")
        assert_openai_error(client.post("/v1/embeddings", json={"inputs": "x"}), 422, "validation", "input")
        assert_openai_error(
            client.post("/v1/embeddings", json={"input": "x", "encoding_format": "int8"}), 422, "validation",
            "encoding_format",
        )
        assert_openai_error(
            client.post("/v1/embeddings", content=b"{not json", headers={"content-type": "application/json"}),
            422, "validation", "JSON",
        )
        assert_openai_error(client.post("/v1/embeddings", json={"input": ["a"] * 5}), 422, "validation", "at most 4")
        assert_openai_error(client.post("/v1/embeddings", json={"input": [10**9]}), 422, "validation", "vocabulary")
        assert_openai_error(
            client.post("/v1/embeddings", json={"input": "word " * 40}), 422, "validation", "at most 16"
        )

    @pytest.mark.parametrize(
        ("body", "code", "fragment"),
        [
            ({"input": [2**70]}, "validation", "input 0 has token ids outside the vocabulary"),
            ({"input": [[101], [2**63]]}, "validation", "input 1 has token ids outside the vocabulary"),
            ({"input": "\ud800"}, "tokenizer", "input 0 contains a lone surrogate"),
            ({"input": "x", "model": "\udfff"}, "tokenizer", "model contains a lone surrogate (U+DFFF) at character 0"),
        ],
    )
    def test_huge_ids_and_lone_surrogates_are_4xx(
        self, client: TestClient, body: dict[str, object], code: str, fragment: str
    ) -> None:
        response = client.post("/v1/embeddings", content=json.dumps(body), headers={"content-type": "application/json"})
        assert_openai_error(response, 422, code, fragment)

    def test_openapi_documents_openai_errors(self, client: TestClient) -> None:
        schema = client.get("/openapi.json").json()
        for path in ("/v1/embeddings", "/embeddings"):
            operation = schema["paths"][path]["post"]
            assert {"200", "400", "413", "422", "429", "500", "503"} <= set(operation["responses"])
            assert "401" not in operation["responses"]  # no API key configured here
            ref = operation["responses"]["422"]["content"]["application/json"]["schema"]["$ref"]
            assert ref.endswith("/OpenAIErrorBody")
        assert "HTTPValidationError" not in schema["components"]["schemas"] or all(
            "HTTPValidationError" not in str(schema["paths"][p]) for p in ("/v1/embeddings", "/embeddings")
        )


class TestRequestModel:
    @pytest.mark.parametrize(
        ("value", "texts", "ids"),
        [
            ("hello", ["hello"], []),
            (["a", "b"], ["a", "b"], []),
            ([101, 7592, 102], [], [[101, 7592, 102]]),
            ([[101, 102], [101, 7592, 102]], [], [[101, 102], [101, 7592, 102]]),
        ],
    )
    def test_every_input_shape(self, value: object, texts: list[str], ids: list[list[int]]) -> None:
        request = EmbeddingsRequest.model_validate({"input": value, "model": "m"})
        assert split_input(request.input) == (texts, ids)

    @pytest.mark.parametrize("value", [[1, "a"], [1.5], [[1], ["a"]], [True], None, {"a": 1}])
    def test_mixed_or_wrong_types_are_rejected(self, value: object) -> None:
        with pytest.raises(ValidationError):
            EmbeddingsRequest.model_validate({"input": value})

    @pytest.mark.parametrize("value", [[], "", ["a", ""], [[1], []], " ", ["a", "\u3000\t"]])
    def test_nothing_to_embed_is_empty_input(self, value: object) -> None:
        request = EmbeddingsRequest.model_validate({"input": value})
        with pytest.raises(EmptyInput):
            split_input(request.input)

    def test_defaults_and_extra_fields(self) -> None:
        request = EmbeddingsRequest.model_validate({"input": "x", "user": "u", "something_new": 1})
        assert request.encoding_format == "float"
        assert request.dimensions is None

    @pytest.mark.parametrize(
        "body",
        [
            {"input": "x", "encoding_format": "int8"},
            {"input": "x", "dimensions": 0},
            {"input": "x", "dimensions": "8"},  # strict, as /embed is
            {"input": "x", "dimensions": True},
            {"input": ["1", "2"], "dimensions": 2.5},
        ],
    )
    def test_bad_options_are_rejected(self, body: dict[str, object]) -> None:
        with pytest.raises(ValidationError):
            EmbeddingsRequest.model_validate(body)


class TestBase64:
    def test_little_endian_float32_round_trip(self) -> None:
        vector = np.array([1.0, -2.5, 3.25e-3], dtype=np.float32)
        encoded = encode_base64(vector)
        raw = base64.b64decode(encoded)
        assert raw == np.array(vector, dtype="<f4").tobytes()
        np.testing.assert_array_equal(np.frombuffer(raw, dtype="<f4"), vector)

    def test_big_endian_input_is_converted(self) -> None:
        vector = np.array([1.0, 2.0], dtype=">f4")
        assert base64.b64decode(encode_base64(vector)) == b"\x00\x00\x80?\x00\x00\x00@"

    def test_response_shape(self) -> None:
        content = response_content([[1.0, 0.0], [0.0, 1.0]], [3, 4], "m", "base64")
        assert content["object"] == "list"
        assert content["model"] == "m"
        assert content["usage"] == {"prompt_tokens": 7, "total_tokens": 7}
        assert [item["index"] for item in content["data"]] == [0, 1]
        assert all(item["object"] == "embedding" for item in content["data"])
        assert isinstance(content["data"][0]["embedding"], str)
        floats = response_content([[1.0, 0.0], [0.0, 1.0]], [3, 4], "m", "float")
        assert floats["data"][1]["embedding"] == [0.0, 1.0]
        EmbeddingsResponse.model_validate(content)
        EmbeddingsResponse.model_validate(floats)
