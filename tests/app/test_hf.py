"""POST / for huggingface_hub's InferenceClient: the body's shape picks fill-mask or feature extraction."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from app.routes.hf import FEATURE_EXTRACTION, FILL_MASK, task_of
from app.server import create_app
from app.settings import Settings
from tests.app.conftest import serving

TIMING_HEADERS = ("x-tokenization-time", "x-queue-time", "x-inference-time", "x-total-time")


@pytest.fixture(scope="module")
def client(tiny_mlm_model_dir: Path) -> Iterator[TestClient]:
    settings = Settings(model_dir=tiny_mlm_model_dir, providers=["cpu"], intra_op_threads=1, max_batch_tokens=512)
    with serving(create_app(settings)) as test_client:
        yield test_client


@pytest.mark.parametrize(
    ("body", "task"),
    [
        ({"inputs": "a [MASK]", "parameters": {}}, FILL_MASK),
        ({"inputs": "a [MASK]", "parameters": None}, FILL_MASK),
        ({"inputs": "a", "normalize": True}, FEATURE_EXTRACTION),
        ({"inputs": "a [MASK]"}, FEATURE_EXTRACTION),
        (["not", "an", "object"], FEATURE_EXTRACTION),
    ],
)
def test_task_of(body: object, task: str) -> None:
    assert task_of(body) == task


@pytest.mark.parametrize(
    ("body", "same_as"),
    [
        ({"inputs": "Paris is the [MASK] of France.", "parameters": {}}, "/fill-mask"),
        ({"inputs": "The [MASK] sat on the [MASK].", "parameters": {"top_k": 2}}, "/fill-mask"),
        ({"inputs": ["A [MASK] day.", "Two [MASK] [MASK]."], "parameters": {"top_k": 3}}, "/fill-mask"),
        ({"inputs": "A cup of [MASK].", "parameters": {"targets": ["tea", "coffee"]}}, "/fill-mask"),
        ({"inputs": "hello world"}, "/embed"),
        ({"inputs": ["first", "second one"], "normalize": False}, "/embed"),
        ({"inputs": "a [MASK] as text", "normalize": True, "truncate": True, "truncation_direction": "Left"}, "/embed"),
        ({"inputs": ["x"], "dimensions": 4, "prompt_name": None}, "/embed"),
    ],
)
def test_parameters_mean_fill_mask_else_embed(client: TestClient, body: dict[str, object], same_as: str) -> None:
    response = client.post("/", json=body)
    assert response.status_code == 200, response.text
    assert response.json() == client.post(same_as, json=body).json()
    assert all(name in response.headers for name in TIMING_HEADERS)


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        ({"inputs": "no mask here", "parameters": {}}, "[MASK]"),
        ({"inputs": "a [MASK]", "parameters": {"top_k": "3"}}, "top_k"),
        ({"inputs": 3}, "inputs"),
        ({"normalize": True}, "inputs"),
        ([1, 2], "feature-extraction"),
    ],
)
def test_errors_are_tei_style_422(client: TestClient, body: object, fragment: str) -> None:
    response = client.post("/", json=body)
    assert response.status_code == 422
    assert response.json()["error_type"] == "validation"
    assert fragment in response.json()["error"]


def test_empty_input_is_400(client: TestClient) -> None:
    response = client.post("/", json={"inputs": ""})
    assert response.status_code == 400
    assert response.json()["error_type"] == "empty"


def test_get_is_the_widget_page(client: TestClient) -> None:
    page = client.get("/")
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    assert 'id="fill-mask-form"' in page.text and 'id="similarity-form"' in page.text
    assert client.get("/static/widget.js").headers["content-type"].startswith("text/javascript")
    assert client.get("/static/widget.css").headers["content-type"].startswith("text/css")
    missing = client.get("/static/../server.py")
    assert missing.status_code == 404
    assert client.get("/static/index.py").status_code == 404


def test_openapi_documents_the_errors_of_both_tasks(client: TestClient) -> None:
    # The body schema (one branch per task) is tested in test_openapi.py.
    schema = client.get("/openapi.json").json()
    operation = schema["paths"]["/"]["post"]
    assert {"200", "400", "422", "429", "503"} <= set(operation["responses"])
    assert operation["responses"]["422"]["content"]["application/json"]["schema"]["$ref"].endswith("/ErrorBody")
    assert "get" not in schema["paths"]["/"]
