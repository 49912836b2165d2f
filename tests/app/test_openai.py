"""OpenAI embeddings: the pure pieces (input split, dimensions, base64) and the routes on a tiny model."""

from __future__ import annotations

import base64

import numpy as np
import pytest
from pydantic import ValidationError

from app.errors import EmptyInput, InvalidInput
from app.routes.openai import EmbeddingsRequest, build_response, encode_base64, reduce_dimensions, split_input


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

    @pytest.mark.parametrize("value", [[], "", ["a", ""], [[1], []]])
    def test_nothing_to_embed_is_empty_input(self, value: object) -> None:
        request = EmbeddingsRequest.model_validate({"input": value})
        with pytest.raises(EmptyInput):
            split_input(request.input)

    def test_defaults_and_extra_fields(self) -> None:
        request = EmbeddingsRequest.model_validate({"input": "x", "user": "u", "something_new": 1})
        assert request.encoding_format == "float"
        assert request.dimensions is None

    @pytest.mark.parametrize("body", [{"input": "x", "encoding_format": "int8"}, {"input": "x", "dimensions": 0}])
    def test_bad_options_are_rejected(self, body: dict[str, object]) -> None:
        with pytest.raises(ValidationError):
            EmbeddingsRequest.model_validate(body)


class TestDimensions:
    def test_truncates_and_renormalizes(self) -> None:
        embeddings = np.array([[3.0, 4.0, 12.0], [1.0, 0.0, 5.0]], dtype=np.float32)
        reduced = reduce_dimensions(embeddings, 2)
        np.testing.assert_allclose(reduced, [[0.6, 0.8], [1.0, 0.0]], rtol=1e-6)

    def test_without_dimensions_rows_are_unit_length(self) -> None:
        embeddings = np.random.default_rng(0).normal(size=(3, 8)).astype(np.float32)
        reduced = reduce_dimensions(embeddings, None)
        np.testing.assert_allclose(np.linalg.norm(reduced, axis=1), 1.0, rtol=1e-6)
        np.testing.assert_allclose(reduced * np.linalg.norm(embeddings, axis=1, keepdims=True), embeddings, rtol=1e-5)

    def test_more_than_hidden_is_a_client_error(self) -> None:
        with pytest.raises(InvalidInput, match="8 dimensions"):
            reduce_dimensions(np.ones((1, 8), dtype=np.float32), 9)

    def test_zero_vector_stays_finite(self) -> None:
        assert np.isfinite(reduce_dimensions(np.zeros((1, 4), dtype=np.float32), 2)).all()


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
        embeddings = np.eye(2, dtype=np.float32)
        response = build_response(embeddings, [3, 4], "m", "base64").model_dump()
        assert response["object"] == "list"
        assert response["model"] == "m"
        assert response["usage"] == {"prompt_tokens": 7, "total_tokens": 7}
        assert [item["index"] for item in response["data"]] == [0, 1]
        assert all(item["object"] == "embedding" for item in response["data"])
        assert isinstance(response["data"][0]["embedding"], str)
        floats = build_response(embeddings, [3, 4], "m", "float").model_dump()
        assert floats["data"][1]["embedding"] == [0.0, 1.0]
