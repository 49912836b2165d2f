"""huggingface_hub's InferenceClient, unmodified, against a live server at its root URL."""

from __future__ import annotations

import httpx
import numpy as np
import pytest

from tests.clients.conftest import API_KEY
from tests.clients.live_server import LiveServer

huggingface_hub = pytest.importorskip("huggingface_hub")

AUTH = {"Authorization": f"Bearer {API_KEY}"}


@pytest.fixture(scope="module")
def client(server: LiveServer) -> huggingface_hub.InferenceClient:
    return huggingface_hub.InferenceClient(model=server.url, token=API_KEY)


def direct(server: LiveServer, path: str, body: dict[str, object]) -> object:
    response = httpx.post(server.url + path, json=body, headers=AUTH)
    response.raise_for_status()
    return response.json()


def as_dicts(elements: list[object]) -> list[dict[str, object]]:
    return [{"score": e.score, "token": e.token, "token_str": e.token_str, "sequence": e.sequence} for e in elements]  # type: ignore[attr-defined]


def test_fill_mask_with_top_k(client: huggingface_hub.InferenceClient, server: LiveServer) -> None:
    text = "Paris is the [MASK] of France."
    got = client.fill_mask(text, top_k=3)
    expected = direct(server, "/fill-mask", {"inputs": text, "parameters": {"top_k": 3}})
    assert as_dicts(got) == expected
    assert len(got) == 3


def test_fill_mask_with_targets(client: huggingface_hub.InferenceClient, server: LiveServer) -> None:
    text = "I would like a cup of [MASK]."
    targets = ["tea", "coffee", "water"]
    got = client.fill_mask(text, targets=targets)
    expected = direct(server, "/fill-mask", {"inputs": text, "parameters": {"targets": targets}})
    assert as_dicts(got) == expected
    assert sorted(e.token_str for e in got) == sorted(targets)


def test_fill_mask_default(client: huggingface_hub.InferenceClient, server: LiveServer) -> None:
    got = client.fill_mask("Hello [MASK]!")
    assert as_dicts(got) == direct(server, "/fill-mask", {"inputs": "Hello [MASK]!", "parameters": {}})


def test_feature_extraction_normalize_and_list(client: huggingface_hub.InferenceClient, server: LiveServer) -> None:
    texts = ["first sentence", "a second, longer sentence"]
    got = client.feature_extraction(texts, normalize=True)
    expected = np.asarray(direct(server, "/embed", {"inputs": texts, "normalize": True}), dtype=np.float32)
    assert got.shape == expected.shape
    np.testing.assert_allclose(got, expected, atol=1e-6)
    np.testing.assert_allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-5)


def test_feature_extraction_unnormalized_single(client: huggingface_hub.InferenceClient, server: LiveServer) -> None:
    got = client.feature_extraction("just one", normalize=False)
    expected = np.asarray(direct(server, "/embed", {"inputs": "just one", "normalize": False}), dtype=np.float32)
    np.testing.assert_allclose(got, expected, atol=1e-6)
    assert abs(float(np.linalg.norm(got[0])) - 1.0) > 1e-3  # really not normalized


def test_error_message_reaches_the_client(client: huggingface_hub.InferenceClient) -> None:
    with pytest.raises(huggingface_hub.errors.HfHubHTTPError, match=r"\[MASK\]"):
        client.fill_mask("there is no mask here")


def test_the_model_can_be_named_in_the_url(server: LiveServer) -> None:
    """InferenceClient posts to exactly its URL, so the query is how it picks one of several models."""
    named = huggingface_hub.InferenceClient(model=f"{server.url}/?model=tiny-distilbert-mlm", token=API_KEY)
    text = "Paris is the [MASK] of France."
    assert as_dicts(named.fill_mask(text, top_k=2)) == direct(server, "/fill-mask", {"inputs": text, "parameters": {"top_k": 2}})
    unknown = huggingface_hub.InferenceClient(model=f"{server.url}/?model=nope", token=API_KEY)
    with pytest.raises(huggingface_hub.errors.HfHubHTTPError, match="404"):
        unknown.feature_extraction("hello")
