"""Two models in one server: a masked-LM (`fake-model`: embed and fill-mask) and an embed-only encoder
(`fake-encoder`), each with its own fake backend, so every answer says which model computed it."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient

from app.server import StartupError, create_app
from app.settings import Settings
from tests.app.conftest import FAKE_HIDDEN, serving
from tests.app.fakes import FakeBackend, factory

MLM, ENCODER = "fake-model", "fake-encoder"
ABC_IDS = np.array([101, 1037, 1038, 1039, 102])  # [CLS] a b c [SEP]


def backends() -> dict[str, FakeBackend]:
    # A different salt per model makes every embedding say where it came from.
    return {
        MLM: FakeBackend(hidden_size=FAKE_HIDDEN, vocab_size=30522, mask_id=103),
        ENCODER: FakeBackend(hidden_size=FAKE_HIDDEN, vocab_size=30522, mask_id=None, salt=7),
    }


@pytest.fixture(scope="module")
def models() -> dict[str, FakeBackend]:
    return backends()


@pytest.fixture(scope="module")
def client(
    fake_encoder_dir: Path, fake_model_dir: Path, models: dict[str, FakeBackend], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[TestClient]:
    models_file = tmp_path_factory.mktemp("models") / "models.yaml"
    models_file.write_text(f"models:\n  {ENCODER}:\n    max_inputs_per_request: 2\n")
    # The encoder is configured first: it is the default for embeddings, the MLM for fill-mask.
    settings = Settings(model_dir=[fake_encoder_dir, fake_model_dir], models_file=models_file, max_wait_ms=0)
    with serving(create_app(settings, factory(models))) as test_client:
        yield test_client


def embedding_of(models: dict[str, FakeBackend], model: str, ids: np.ndarray = ABC_IDS) -> np.ndarray:
    vector = models[model].embedding(ids)
    return vector / np.linalg.norm(vector)


def computed_by(models: dict[str, FakeBackend], vector: list[float]) -> str:
    matches = [name for name in models if np.allclose(vector, embedding_of(models, name), atol=1e-6)]
    assert len(matches) == 1, matches
    return matches[0]


def sample(text: str, name: str, **labels: str) -> float:
    """The sum of `name`'s samples whose labels include `labels` (Prometheus sorts label names)."""
    total = 0.0
    for match in re.finditer(rf"(?m)^{re.escape(name)}{{([^}}]*)}} ([0-9.e+-]+)$", text):
        present = dict(re.findall(r'(\w+)="([^"]*)"', match.group(1)))
        if all(present.get(key) == value for key, value in labels.items()):
            total += float(match.group(2))
    return total


class TestRouting:
    @pytest.mark.parametrize(("model", "expected"), [(None, ENCODER), (ENCODER, ENCODER), (MLM, MLM)])
    def test_embed_by_body_model(self, client: TestClient, models: dict[str, FakeBackend], model: str | None,
                                 expected: str) -> None:
        body = {"inputs": "a b c"} | ({"model": model} if model else {})
        assert computed_by(models, client.post("/embed", json=body).json()[0]) == expected

    def test_embed_by_query_model_and_on_post_root(self, client: TestClient, models: dict[str, FakeBackend]) -> None:
        assert computed_by(models, client.post(f"/embed?model={MLM}", json={"inputs": "a b c"}).json()[0]) == MLM
        assert computed_by(models, client.post(f"/?model={MLM}", json={"inputs": "a b c"}).json()[0]) == MLM
        assert computed_by(models, client.post("/", json={"inputs": "a b c"}).json()[0]) == ENCODER

    def test_body_and_query_must_agree(self, client: TestClient) -> None:
        response = client.post(f"/embed?model={MLM}", json={"inputs": "x", "model": ENCODER})
        assert response.status_code == 422 and "query names" in response.json()["error"]

    @pytest.mark.parametrize("path", ["/v1/embeddings", "/embeddings"])
    def test_openai_uses_the_body_model(self, client: TestClient, models: dict[str, FakeBackend], path: str) -> None:
        for model in (MLM, ENCODER):
            body = client.post(path, json={"input": "a b c", "model": model, "encoding_format": "float"}).json()
            assert body["model"] == model
            assert computed_by(models, body["data"][0]["embedding"]) == model

    def test_fill_mask_defaults_to_the_model_that_has_it(self, client: TestClient) -> None:
        for route in ("/fill-mask", "/"):
            response = client.post(route, json={"inputs": "a [MASK] c", "parameters": {"top_k": 2}})
            assert response.status_code == 200 and len(response.json()) == 2
        assert client.post("/fill-mask", json={"inputs": "a [MASK] c", "model": MLM}).status_code == 200

    @pytest.mark.parametrize("route", ["/fill-mask", "/"])
    def test_a_model_without_the_task_is_422_naming_those_with_it(self, client: TestClient, route: str) -> None:
        response = client.post(route, json={"inputs": "a [MASK] c", "parameters": {}, "model": ENCODER})
        assert response.status_code == 422
        assert response.json()["error_type"] == "validation"
        assert f"'{ENCODER}' does not serve fill-mask; models that do: {MLM}" in response.json()["error"]

    @pytest.mark.parametrize(
        ("path", "body"),
        [
            ("/embed", {"inputs": "x"}),
            ("/fill-mask", {"inputs": "a [MASK]"}),
            ("/", {"inputs": "x"}),
            ("/tokenize", {"inputs": "x"}),
            ("/decode", {"ids": [101]}),
        ],
    )
    def test_unknown_model_is_404_on_every_tei_style_route(self, client: TestClient, path: str, body: dict) -> None:
        response = client.post(path, json=body | {"model": "nope"})
        assert response.status_code == 404
        assert response.json()["error_type"] == "model_not_found"
        assert f"models: {ENCODER}, {MLM}" in response.json()["error"]

    def test_unknown_model_is_openai_model_not_found(self, client: TestClient) -> None:
        response = client.post("/v1/embeddings", json={"input": "x", "model": "text-embedding-3-small"})
        assert response.status_code == 404
        assert response.json()["error"]["code"] == "model_not_found"

    def test_tokenize_and_decode_take_a_model(self, client: TestClient) -> None:
        for model in (MLM, ENCODER):
            tokens = client.post("/tokenize", json={"inputs": "a b", "model": model}).json()
            assert [token["id"] for token in tokens[0]] == [101, 1037, 1038, 102]
            assert client.post("/decode", json={"ids": [1037, 1038], "model": model}).json() == ["a b"]


class TestPerModelOptions:
    def test_the_models_file_limits_only_its_model(self, client: TestClient) -> None:
        three = ["a", "b", "c"]
        refused = client.post("/embed", json={"inputs": three, "model": ENCODER})
        assert refused.status_code == 422 and "at most 2" in refused.json()["error"]
        assert client.post("/embed", json={"inputs": three, "model": MLM}).status_code == 200


class TestDiscovery:
    def test_v1_models_lists_both_in_order(self, client: TestClient) -> None:
        listing = client.get("/v1/models").json()
        assert listing["object"] == "list"
        assert [(card["id"], card["object"], card["tasks"]) for card in listing["data"]] == [
            (ENCODER, "model", ["embed"]),
            (MLM, "model", ["embed", "fill-mask"]),
        ]
        assert all(card["owned_by"] == "distilserve" and card["created"] == 1767225600 for card in listing["data"])

    def test_info_keeps_the_default_models_fields_and_lists_every_model(self, client: TestClient) -> None:
        info = client.get("/info").json()
        assert info["model_id"] == ENCODER and info["mask_token"] == "[MASK]"
        assert [(model["model_id"], model["max_client_batch_size"]) for model in info["models"]] == [
            (ENCODER, 2),
            (MLM, 64),
        ]
        assert all(model["ready"] for model in info["models"])

    def test_every_metric_carries_the_model(self, client: TestClient) -> None:
        client.post("/embed", json={"inputs": "a", "model": MLM})
        client.post("/embed", json={"inputs": "a", "model": ENCODER})
        client.post("/embed", json={"inputs": "a", "model": "nope"})
        text = client.get("/metrics").text
        for model in (MLM, ENCODER):
            assert sample(text, "distilserve_requests_total", route="/embed", status="200", model=model) >= 1
            assert sample(text, "distilserve_batch_size_count", model=model) >= 1
            assert sample(text, "distilserve_ready", model=model) == 1
            assert sample(text, "distilserve_model_info", model=model, dtype="float32") == 1
        assert sample(text, "distilserve_requests_total", route="/embed", status="404", model="") >= 1
        samples = [line for line in text.splitlines() if line.startswith("distilserve_")]
        assert all("model=" in line for line in samples), [line for line in samples if "model=" not in line][:3]


class TestStartUp:
    def test_two_directories_with_one_id_refuse_to_start(self, fake_model_dir: Path) -> None:
        with pytest.raises(StartupError, match="two model directories have the model id 'fake-model'"):
            create_app(Settings(model_dir=[fake_model_dir, fake_model_dir]), factory(backends()))

    def test_a_models_file_naming_no_served_model_refuses(self, fake_model_dir: Path, tmp_path: Path) -> None:
        models_file = tmp_path / "models.yaml"
        models_file.write_text("models:\n  fake-modle:\n    variant: int8\n")
        with pytest.raises(StartupError, match=r"names \['fake-modle'\], which no served model has"):
            create_app(Settings(model_dir=[fake_model_dir], models_file=models_file), factory(backends()))

    @pytest.mark.parametrize(
        ("content", "message"),
        [
            ("models:\n  fake-model:\n    max_batch_sise: 4\n", "max_batch_sise: Extra inputs are not permitted"),
            ("models:\n  fake-model:\n    max_batch_size: 0\n", "max_batch_size: Input should be greater than"),
            ("models: [1, 2]\n", "models: Input should be a valid dictionary"),
            ("models: {\n", "models file"),
        ],
    )
    def test_a_bad_models_file_is_one_line(self, fake_model_dir: Path, tmp_path: Path, content: str, message: str) -> None:
        models_file = tmp_path / "models.yaml"
        models_file.write_text(content)
        with pytest.raises(StartupError, match=re.escape(message)) as raised:
            create_app(Settings(model_dir=[fake_model_dir], models_file=models_file), factory(backends()))
        assert "\n" not in str(raised.value)

    def test_env_var_takes_a_comma_separated_list(
        self, fake_model_dir: Path, fake_encoder_dir: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        monkeypatch.setenv("DISTILSERVE_MODEL_DIR", f"{fake_model_dir},{fake_encoder_dir}")
        app = create_app(Settings(), factory(backends()))
        assert app.state.registry.ids == [MLM, ENCODER]
