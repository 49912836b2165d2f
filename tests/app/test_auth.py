"""The optional API key: missing, wrong and right keys, checked before the body is read; open routes stay
open; /info and /metrics take the key only when asked; no key set means no check."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi import APIRouter, FastAPI
from fastapi.testclient import TestClient
from pydantic import SecretStr, ValidationError

from app.auth import ApiKeyGuard, key_enforced, key_matches, openapi_security, refusal
from app.errors import install_error_handlers
from app.server import create_app
from app.settings import Settings
from tests.app.conftest import serving

KEY = "s3cret-key"


def small_app(api_key: SecretStr | None) -> FastAPI:
    app = FastAPI()
    install_error_handlers(app)
    guarded = APIRouter()

    @guarded.post("/embed")
    def embed(body: dict[str, int]) -> list[int]:
        return [1]

    @guarded.post("/v1/embeddings")
    def embeddings() -> dict[str, str]:
        return {"object": "list"}

    @app.get("/health")
    def health() -> dict[str, str]:
        return {"status": "ok"}

    app.include_router(guarded, dependencies=openapi_security(api_key))
    if key_enforced(api_key):
        app.add_middleware(ApiKeyGuard, api_key=api_key, protected=guarded.routes, on_refused=lambda: None)
    return app


@pytest.fixture(scope="module")
def client() -> TestClient:
    return TestClient(small_app(SecretStr(KEY)))


def test_missing_key_is_401_tei_style(client: TestClient) -> None:
    response = client.post("/embed", json={"a": 1})
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == "Bearer"
    assert response.json() == {"error": "missing API key: send `Authorization: Bearer <key>`", "error_type": "unauthorized"}


@pytest.mark.parametrize("header", [f"Bearer {KEY}x", "Bearer ", f"Basic {KEY}", KEY, f"Bearer {KEY[:-1]}"])
def test_wrong_key_is_401(client: TestClient, header: str) -> None:
    response = client.post("/embed", json={"a": 1}, headers={"Authorization": header})
    assert response.status_code == 401
    assert response.json()["error_type"] == "unauthorized"


def test_right_key_passes(client: TestClient) -> None:
    assert client.post("/embed", json={"a": 1}, headers={"Authorization": f"Bearer {KEY}"}).json() == [1]
    assert client.post("/embed", json={"a": 1}, headers={"authorization": f"bearer {KEY}"}).status_code == 200


@pytest.mark.parametrize("body", [b"{broken", b"\xff\xfe", b'{"a": "not an int"}'])
def test_the_key_is_checked_before_the_body_is_read(client: TestClient, body: bytes) -> None:
    headers = {"content-type": "application/json"}
    assert client.post("/embed", content=body, headers=headers).status_code == 401
    assert client.post("/embed", content=body, headers={**headers, "Authorization": "Bearer no"}).status_code == 401
    assert client.post("/embed", content=body, headers={**headers, "Authorization": f"Bearer {KEY}"}).status_code == 422


def test_other_methods_and_unknown_paths_are_the_router_s_business(client: TestClient) -> None:
    assert client.get("/embed").status_code == 405
    assert client.post("/nowhere").status_code == 404


@pytest.mark.parametrize(
    ("header", "reason"),
    [
        (None, "missing API key: send `Authorization: Bearer <key>`"),
        (b"Bearer", "missing API key: send `Authorization: Bearer <key>`"),
        (b"Basic " + KEY.encode(), "missing API key: send `Authorization: Bearer <key>`"),
        (b"Bearer " + KEY.encode() + b"x", "invalid API key"),
        (b"bearer  " + KEY.encode() + b" ", None),
    ],
)
def test_refusal_reasons(header: bytes | None, reason: str | None) -> None:
    assert refusal(header, SecretStr(KEY)) == reason


def test_openai_paths_get_openai_style_401(client: TestClient) -> None:
    response = client.post("/v1/embeddings", headers={"Authorization": "Bearer nope"})
    assert response.status_code == 401
    assert response.json() == {
        "error": {"message": "invalid API key", "type": "authentication_error", "code": "unauthorized"}
    }


def test_open_routes_need_no_key(client: TestClient) -> None:
    assert client.get("/health").status_code == 200


def test_openapi_declares_bearer_only_when_a_key_is_set() -> None:
    with_key = TestClient(small_app(SecretStr(KEY))).get("/openapi.json").json()
    assert with_key["components"]["securitySchemes"]["api_key"]["scheme"] == "bearer"
    assert with_key["paths"]["/embed"]["post"]["security"] == [{"api_key": []}]
    assert "security" not in with_key["paths"]["/health"]["get"]
    without_key = TestClient(small_app(None)).get("/openapi.json").json()
    assert "securitySchemes" not in without_key.get("components", {})


@pytest.mark.parametrize("api_key", [None, SecretStr("")])
def test_no_key_configured_means_open(api_key: SecretStr | None) -> None:
    assert TestClient(small_app(api_key)).post("/embed", json={"a": 1}).status_code == 200


def test_key_comparison() -> None:
    assert key_matches(KEY, SecretStr(KEY))
    assert not key_matches(KEY + "x", SecretStr(KEY))
    assert key_matches("ключ", SecretStr("ключ"))


PROTECTED = [
    ("/embed", {"inputs": "x"}),
    ("/fill-mask", {"inputs": "a [MASK]"}),
    ("/v1/embeddings", {"input": "x"}),
    ("/embeddings", {"input": "x"}),
    ("/", {"inputs": "x"}),
    ("/", {"inputs": "a [MASK]", "parameters": {}}),
    ("/tokenize", {"inputs": "x"}),
    ("/decode", {"ids": [101]}),
]
OPEN = ["/health", "/ready", "/metrics", "/info", "/", "/static/widget.js", "/docs", "/openapi.json"]


@pytest.fixture(scope="module")
def served(tiny_mlm_model_dir: Path) -> Iterator[TestClient]:
    settings = Settings(
        model_dir=tiny_mlm_model_dir, providers=["cpu"], intra_op_threads=1, max_batch_tokens=512,
        api_key=SecretStr(KEY),
    )
    with serving(create_app(settings)) as test_client:
        yield test_client


@pytest.mark.parametrize(("path", "body"), PROTECTED)
def test_app_inference_routes_need_the_key(served: TestClient, path: str, body: object) -> None:
    missing = served.post(path, json=body)
    wrong = served.post(path, json=body, headers={"Authorization": "Bearer not-it"})
    right = served.post(path, json=body, headers={"Authorization": f"Bearer {KEY}"})
    assert (missing.status_code, wrong.status_code, right.status_code) == (401, 401, 200)
    for response in (missing, wrong):
        message = response.json()["error"]
        if isinstance(message, dict):  # OpenAI style on /v1/embeddings and /embeddings
            assert message["code"] == "unauthorized"
        else:
            assert response.json()["error_type"] == "unauthorized"


@pytest.mark.parametrize("path", OPEN)
def test_app_open_routes_stay_open(served: TestClient, path: str) -> None:
    assert served.get(path).status_code == 200


def test_app_unauthorized_is_counted(served: TestClient) -> None:
    served.post("/embed", json={"inputs": "x"})
    metrics = served.get("/metrics").text
    # The key is checked before the route picks a model: the failure carries an empty model label.
    assert sample_value(metrics, 'distilserve_failures_total{error_type="unauthorized",model=""}') >= 1
    # ... and the request is counted under its route, as it was when a dependency refused it.
    assert sample_value(metrics, 'distilserve_requests_total{model="",route="/embed",status="401"}') >= 1


def sample_value(metrics: str, sample: str) -> float:
    line = next(line for line in metrics.splitlines() if line.startswith(sample + " "))
    return float(line.removeprefix(sample + " "))


@pytest.fixture(scope="module")
def protected_ops(tiny_mlm_model_dir: Path) -> Iterator[TestClient]:
    settings = Settings(
        model_dir=tiny_mlm_model_dir, providers=["cpu"], intra_op_threads=1, max_batch_tokens=512,
        api_key=SecretStr(KEY), protect_info_metrics=True,
    )
    with serving(create_app(settings)) as test_client:
        yield test_client


@pytest.mark.parametrize("path", ["/info", "/metrics"])
def test_info_and_metrics_take_the_key_when_asked(protected_ops: TestClient, path: str) -> None:
    assert protected_ops.get(path).status_code == 401
    assert protected_ops.get(path, headers={"Authorization": f"Bearer {KEY}"}).status_code == 200


@pytest.mark.parametrize("path", ["/health", "/ready", "/", "/docs", "/openapi.json"])
def test_probes_docs_and_widget_stay_open_when_info_and_metrics_are_protected(protected_ops: TestClient, path: str) -> None:
    assert protected_ops.get(path).status_code == 200


def test_openapi_declares_the_key_on_info_and_metrics_only_when_they_take_it(
    served: TestClient, protected_ops: TestClient
) -> None:
    open_paths = served.get("/openapi.json").json()["paths"]
    assert "security" not in open_paths["/info"]["get"] and "security" not in open_paths["/metrics"]["get"]
    paths = protected_ops.get("/openapi.json").json()["paths"]
    assert paths["/info"]["get"]["security"] == [{"api_key": []}]
    assert "401" in paths["/metrics"]["get"]["responses"]
    assert "security" not in paths["/health"]["get"] and "security" not in paths["/ready"]["get"]


def test_protecting_info_and_metrics_needs_a_key() -> None:
    with pytest.raises(ValidationError, match="protect_info_metrics is set but api_key is not"):
        Settings(protect_info_metrics=True)
