"""/openapi.json says what the handlers send: error responses from the one error table, real media
types, 401 only when a key is enforced; /docs renders from local assets when swagger-ui-bundle is there."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from pydantic import SecretStr

from app.errors import ERROR_TABLE, error_body_model
from app.model_config import SCHEMA_MAX_INPUTS
from app.routes import docs
from app.schemas import NOT_BLANK, WHITESPACE
from app.server import create_app
from app.settings import Settings
from app.tokenizer import is_blank
from tests.app.fakes import FakeBackend, factory
from tests.app.conftest import FAKE_HIDDEN

# Route -> the error kinds its handler (or the layers around it) can answer with.
INFERENCE = (
    "validation", "tokenizer", "empty", "payload_too_large", "unsupported_media", "overloaded", "unhealthy", "backend"
)
EXPECTED_ERRORS: dict[str, tuple[str, ...]] = {
    "/embed": INFERENCE,
    "/fill-mask": INFERENCE,
    "/": INFERENCE,
    "/predict": INFERENCE,
    "/rerank": INFERENCE,
    "/classify": INFERENCE,
    "/token-classification": INFERENCE,
    "/v1/embeddings": INFERENCE,
    "/embeddings": INFERENCE,
    "/tokenize": ("validation", "tokenizer", "payload_too_large", "unsupported_media", "internal"),
    "/decode": ("validation", "tokenizer", "payload_too_large", "unsupported_media", "internal"),
}


def openapi(model_dir: Path, api_key: SecretStr | None = None) -> dict[str, Any]:
    backend = FakeBackend(hidden_size=FAKE_HIDDEN, vocab_size=30522, mask_id=103)
    app = create_app(Settings(model_dir=model_dir, api_key=api_key), factory(backend))
    return app.openapi()


@pytest.fixture(scope="module")
def schema(fake_model_dir: Path) -> dict[str, Any]:
    return openapi(fake_model_dir)


def schema_ref(response: dict[str, Any], media_type: str = "application/json") -> str:
    return str(response["content"][media_type]["schema"]["$ref"]).rsplit("/", 1)[-1]


@pytest.mark.parametrize("path", sorted(EXPECTED_ERRORS))
def test_inference_routes_document_their_errors_from_the_table(schema: dict[str, Any], path: str) -> None:
    responses = schema["paths"][path]["post"]["responses"]
    statuses = {str(ERROR_TABLE[kind][0]) for kind in EXPECTED_ERRORS[path]}
    assert statuses <= set(responses), f"{path} is missing {statuses - set(responses)}"
    body = error_body_model(path).__name__
    for status, response in responses.items():
        if status.startswith(("4", "5")):
            assert schema_ref(response) == body, (path, status)
            assert "error kind:" in response["description"]
    assert "401" not in responses  # no key configured


def test_no_route_documents_fastapis_validation_body(schema: dict[str, Any]) -> None:
    assert "HTTPValidationError" not in str(schema["paths"])
    assert "HTTPValidationError" not in schema.get("components", {}).get("schemas", {})


def test_probes_document_their_503(schema: dict[str, Any]) -> None:
    assert schema_ref(schema["paths"]["/health"]["get"]["responses"]["503"]) == "Health"
    assert schema_ref(schema["paths"]["/ready"]["get"]["responses"]["503"]) == "Ready"


def test_metrics_is_text_plain(schema: dict[str, Any]) -> None:
    content = schema["paths"]["/metrics"]["get"]["responses"]["200"]["content"]
    assert list(content) == ["text/plain"]


def test_401_is_documented_only_when_a_key_is_enforced(fake_model_dir: Path) -> None:
    with_key = openapi(fake_model_dir, SecretStr("k"))["paths"]
    for path in EXPECTED_ERRORS:
        assert schema_ref(with_key[path]["post"]["responses"]["401"]) == error_body_model(path).__name__, path
    for path in ("/health", "/ready", "/info", "/metrics"):
        assert "401" not in with_key[path]["get"]["responses"], path


def test_documented_error_body_is_what_is_sent(fake_model_dir: Path) -> None:
    backend = FakeBackend(hidden_size=FAKE_HIDDEN, vocab_size=30522, mask_id=103)
    client = TestClient(create_app(Settings(model_dir=fake_model_dir), factory(backend)))
    for path, body in (("/embed", {"inputs": 3}), ("/v1/embeddings", {"input": 3})):
        response = client.post(path, json=body)
        assert response.status_code == 422
        error_body_model(path).model_validate(response.json())


def test_docs_page_uses_local_assets_when_bundled(fake_model_dir: Path) -> None:
    backend = FakeBackend(hidden_size=FAKE_HIDDEN, vocab_size=30522, mask_id=103)
    client = TestClient(create_app(Settings(model_dir=fake_model_dir), factory(backend)))
    page = client.get("/docs")
    assert page.status_code == 200 and "/openapi.json" in page.text
    if docs.swagger_ui_dir() is None:
        pytest.skip("swagger-ui-bundle is not installed: /docs uses FastAPI's CDN assets")
    assert "cdn" not in page.text.lower()
    for asset in ("swagger-ui-bundle.js", "swagger-ui.css"):
        assert f"{docs.ASSETS_PATH}/{asset}" in page.text
        assert client.get(f"{docs.ASSETS_PATH}/{asset}").status_code == 200


# Bodies POST / accepts, with the task `task_of` picks for each.
ROOT_BODIES = [
    ({"inputs": "x"}, "EmbedRequest"),
    ({"inputs": ["x", "y"], "normalize": False, "dimensions": 4}, "EmbedRequest"),
    ({"inputs": "a [MASK]", "parameters": {}}, "FillMaskRequest"),
    ({"inputs": "a [MASK]", "parameters": {"top_k": 2}, "normalize": True}, "FillMaskRequest"),
]


@pytest.mark.parametrize(("body", "branch"), ROOT_BODIES)
def test_root_body_matches_exactly_the_branch_the_server_picks(schema: dict[str, Any], body: dict[str, Any], branch: str) -> None:
    jsonschema_rs = pytest.importorskip("jsonschema_rs")  # schemathesis' validator
    body_schema = schema["paths"]["/"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    assert set(body_schema) - {"title", "description"} == {"oneOf"}, "one schema, not oneOf and anyOf side by side"
    matching = []
    for option in body_schema["oneOf"]:
        validator = jsonschema_rs.validator_for({**option, "components": schema["components"]})
        if validator.is_valid(body):
            matching.append(str(option["allOf"][0]["$ref"]).rsplit("/", 1)[-1])
    assert matching == [branch]


def test_the_blank_pattern_is_the_servers_whitespace() -> None:
    assert sorted(map(ord, WHITESPACE)) == [code for code in range(0x110000) if chr(code).isspace()]
    for text in ("", " ", "\t\u3000\x85", " a ", "\x00", "[MASK]"):
        assert (re.search(NOT_BLANK, text) is None) == is_blank(text), repr(text)


def test_the_schemas_state_the_static_limits(schema: dict[str, Any]) -> None:
    components = schema["components"]["schemas"]

    def text_limits(option: dict[str, Any]) -> tuple[object, object]:
        return option.get("minLength"), option.get("pattern")

    for name in ("EmbedRequest", "FillMaskRequest"):
        text, texts = components[name]["properties"]["inputs"]["anyOf"]
        assert text_limits(text) == text_limits(texts["items"]) == (1, NOT_BLANK), name
        assert (texts["minItems"], texts["maxItems"]) == (1, SCHEMA_MAX_INPUTS), name
    dimensions = components["EmbedRequest"]["properties"]["dimensions"]["anyOf"][0]
    assert dimensions == components["EmbeddingsRequest"]["properties"]["dimensions"]["anyOf"][0]
    assert dimensions["minimum"] == 1
    parameters = components["FillMaskParameters"]["properties"]
    assert parameters["top_k"]["minimum"] == 0
    assert parameters["targets"]["anyOf"][0]["minItems"] == 1
    ids = components["EmbeddingsRequest"]["properties"]["input"]["anyOf"][2]
    assert ids["minItems"] == 1 and ids["items"]["minimum"] == 0
    assert components["DecodeRequest"]["properties"]["ids"]["anyOf"][0]["items"]["minimum"] == 0
    # What only the model knows is said in words.
    assert "max_input_length" in components["EmbedRequest"]["properties"]["inputs"]["description"]
    assert "hidden_size" in components["EmbedRequest"]["properties"]["dimensions"]["description"]
    assert "max_top_k" in parameters["top_k"]["description"]
