"""huggingface_hub's InferenceClient, unmodified, on classifiers: text_classification and
token_classification against a live server's root URL."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from tests.clients.conftest import API_KEY
from tests.clients.live_server import LiveServer, live_server

huggingface_hub = pytest.importorskip("huggingface_hub")

AUTH = {"Authorization": f"Bearer {API_KEY}"}
SENTIMENT, NER = "tiny-distilbert-sentiment", "tiny-bert-ner"
TEXT = "The hotel in Lisbon was lovely, and Maria at the desk was very kind."


@pytest.fixture(scope="module")
def server(tiny_classifier_dir: Callable[..., Path], tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    """The sentiment classifier (the default model) and a BERT NER model, with an API key set."""
    first, second = tiny_classifier_dir("sentiment"), tiny_classifier_dir("ner", "bert")
    env = {"DISTILSERVE_API_KEY": API_KEY}
    with live_server(first, tmp_path_factory.mktemp("server"), env, args=["--model-dir", str(second)]) as live:
        yield live


def direct(server: LiveServer, path: str, body: dict[str, object]) -> object:
    response = httpx.post(server.url + path, json=body, headers=AUTH)
    response.raise_for_status()
    return response.json()


def test_text_classification_lists_every_label_best_first(server: LiveServer) -> None:
    client = huggingface_hub.InferenceClient(model=server.url, token=API_KEY)
    got = client.text_classification(TEXT)
    expected = direct(server, "/classify", {"inputs": TEXT, "parameters": {"top_k": None}})
    assert [{"label": e.label, "score": e.score} for e in got] == expected
    assert sorted(e.label for e in got) == ["negative", "neutral", "positive"]


def test_text_classification_top_k_and_function(server: LiveServer) -> None:
    client = huggingface_hub.InferenceClient(model=f"{server.url}/?model={SENTIMENT}", token=API_KEY)
    got = client.text_classification(TEXT, top_k=2, function_to_apply="sigmoid")
    expected = direct(server, "/classify", {"inputs": TEXT, "parameters": {"top_k": 2, "function_to_apply": "sigmoid"}})
    assert [{"label": e.label, "score": e.score} for e in got] == expected


def test_token_classification_groups_entities(server: LiveServer) -> None:
    client = huggingface_hub.InferenceClient(model=f"{server.url}/?model={NER}", token=API_KEY)
    got = client.token_classification(TEXT, ignore_labels=[])
    expected = direct(
        server, "/token-classification",
        {"inputs": TEXT, "model": NER, "parameters": {"aggregation_strategy": "simple", "ignore_labels": []}},
    )
    assert [
        {"entity_group": e.entity_group, "score": e.score, "word": e.word, "start": e.start, "end": e.end} for e in got
    ] == expected
    assert all(TEXT[e.start : e.end].lower() == e.word for e in got)  # spans are the text's own characters


def test_token_classification_per_token(server: LiveServer) -> None:
    client = huggingface_hub.InferenceClient(model=f"{server.url}/?model={NER}", token=API_KEY)
    got = client.token_classification(TEXT, aggregation_strategy="none")
    expected = direct(server, "/token-classification", {"inputs": TEXT, "model": NER})
    assert [(e.entity, e.score, e.index, e.word, e.start, e.end) for e in got] == [  # type: ignore[attr-defined]
        (e["entity"], e["score"], e["index"], e["word"], e["start"], e["end"]) for e in expected  # type: ignore[index]
    ]
