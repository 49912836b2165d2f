"""The openai package, unmodified, against a live server: its results equal direct /embed results."""

from __future__ import annotations

import re

import httpx
import numpy as np
import pytest

from tests.clients.conftest import API_KEY
from tests.clients.live_server import LiveServer

openai = pytest.importorskip("openai")

MODEL_ID = "tiny-distilbert-mlm"  # the id tests/conftest.py exports the served model under
SENTENCES = ["The cat sat on the mat.", "A quick brown fox.", "Embeddings map text to vectors."]


def direct_embed(server: LiveServer, inputs: str | list[str]) -> np.ndarray:
    response = httpx.post(
        f"{server.url}/embed", json={"inputs": inputs, "normalize": True}, headers={"Authorization": f"Bearer {API_KEY}"}
    )
    response.raise_for_status()
    return np.asarray(response.json(), dtype=np.float32)


def tokenize(server: LiveServer, text: str) -> list[int]:
    response = httpx.post(f"{server.url}/tokenize", json={"inputs": text}, headers={"Authorization": f"Bearer {API_KEY}"})
    response.raise_for_status()
    return [token["id"] for token in response.json()[0]]


@pytest.fixture(scope="module")
def client(server: LiveServer) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{server.url}/v1", api_key=API_KEY)


def requests_to(server: LiveServer, path: str) -> float:
    """How many requests the server counted for a route (all statuses), from /metrics."""
    total = 0.0
    for line in httpx.get(f"{server.url}/metrics").text.splitlines():
        if line.startswith("#") or "_requests_total{" not in line:
            continue
        if re.search(rf'(route|path|handler)="{re.escape(path)}"', line):
            total += float(line.rsplit(" ", 1)[1])
    return total


def test_default_base64_equals_embed(server: LiveServer) -> None:
    sent: list[bytes] = []
    # Only observes the wire; the client's own behaviour (its default encoding_format) is untouched.
    http_client = httpx.Client(event_hooks={"request": [lambda request: sent.append(request.read())]})
    client = openai.OpenAI(base_url=f"{server.url}/v1", api_key=API_KEY, http_client=http_client)
    result = client.embeddings.create(model=MODEL_ID, input=SENTENCES[0])
    assert b'"encoding_format":"base64"' in sent[0].replace(b" ", b"")
    assert result.model == MODEL_ID
    assert len(result.data) == 1
    got = np.asarray(result.data[0].embedding, dtype=np.float32)
    np.testing.assert_allclose(got, direct_embed(server, SENTENCES[0])[0], atol=1e-6)
    assert result.usage.prompt_tokens == len(tokenize(server, SENTENCES[0]))
    assert result.usage.total_tokens == result.usage.prompt_tokens


def test_explicit_float_list_input(client: openai.OpenAI, server: LiveServer) -> None:
    result = client.embeddings.create(model=MODEL_ID, input=SENTENCES, encoding_format="float")
    assert [item.index for item in result.data] == [0, 1, 2]
    got = np.asarray([item.embedding for item in result.data], dtype=np.float32)
    np.testing.assert_allclose(got, direct_embed(server, SENTENCES), atol=1e-6)
    assert result.usage.prompt_tokens == sum(len(tokenize(server, text)) for text in SENTENCES)


def test_token_id_input_equals_text(client: openai.OpenAI, server: LiveServer) -> None:
    ids = tokenize(server, SENTENCES[1])
    body = ids[1:-1]  # without [CLS]/[SEP]: the server adds them, as for text
    one = client.embeddings.create(model=MODEL_ID, input=body)
    many = client.embeddings.create(model=MODEL_ID, input=[ids, body])
    expected = direct_embed(server, SENTENCES[1])[0]
    np.testing.assert_allclose(one.data[0].embedding, expected, atol=1e-5)
    for item in many.data:
        np.testing.assert_allclose(item.embedding, expected, atol=1e-5)
    assert one.usage.prompt_tokens == len(ids)


def test_dimensions_truncate_and_renormalize(client: openai.OpenAI, server: LiveServer) -> None:
    result = client.embeddings.create(model=MODEL_ID, input=SENTENCES[2], dimensions=8)
    got = np.asarray(result.data[0].embedding)
    assert got.shape == (8,)
    full = direct_embed(server, SENTENCES[2])[0][:8]
    np.testing.assert_allclose(got, full / np.linalg.norm(full), atol=1e-5)


def test_client_error_is_shown_and_not_retried(client: openai.OpenAI, server: LiveServer) -> None:
    before = requests_to(server, "/v1/embeddings")
    with pytest.raises(openai.APIStatusError) as caught:
        client.embeddings.create(model=MODEL_ID, input=SENTENCES[0], dimensions=100_000)
    error = caught.value
    assert 400 <= error.status_code < 500
    assert "dimensions" in error.message
    assert error.body["code"] == "validation"  # type: ignore[index]
    # The openai client retries 5xx (and 408/409/429) twice; a client mistake must be sent once.
    assert requests_to(server, "/v1/embeddings") - before == 1


def test_wrong_key_is_an_authentication_error(server: LiveServer) -> None:
    wrong = openai.OpenAI(base_url=f"{server.url}/v1", api_key="wrong", max_retries=0)
    with pytest.raises(openai.AuthenticationError, match="invalid API key"):
        wrong.embeddings.create(model=MODEL_ID, input="hello")


def test_models_list_names_the_served_model(server: LiveServer) -> None:
    client = openai.OpenAI(base_url=f"{server.url}/v1", api_key=API_KEY)
    assert [model.id for model in client.models.list()] == [MODEL_ID]


def test_unknown_model_is_not_found_and_not_retried(server: LiveServer) -> None:
    before = requests_to(server, "/v1/embeddings")
    client = openai.OpenAI(base_url=f"{server.url}/v1", api_key=API_KEY)
    with pytest.raises(openai.NotFoundError, match="not served here"):
        client.embeddings.create(model="text-embedding-3-small", input="hello")
    assert requests_to(server, "/v1/embeddings") - before == 1


def test_base_url_without_v1_hits_embeddings(server: LiveServer) -> None:
    plain = openai.OpenAI(base_url=server.url, api_key=API_KEY)
    result = plain.embeddings.create(model=MODEL_ID, input="hello")
    np.testing.assert_allclose(result.data[0].embedding, direct_embed(server, "hello")[0], atol=1e-6)
