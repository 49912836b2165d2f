"""The seed's acceptance test: distilbert-base-uncased served through the API reproduces its model card.

Runs when distilbert-base-uncased weights are available: a local copy named by
DISTILSERVE_DISTILBERT_DIR (a checkpoint directory with config.json, weights and tokenizer), or a
reachable hub. Otherwise it is skipped and says why.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

ENV_VAR = "DISTILSERVE_DISTILBERT_DIR"
HUB_ID = "distilbert-base-uncased"
# From distilbert-base-uncased's model card on the Hugging Face Hub (its fill-mask example).
CARD_HELLO = [
    ("role", 2535, 0.05292855575680733),
    ("fashion", 4827, 0.03968575969338417),
    ("business", 2449, 0.034743521362543106),
    ("model", 2944, 0.03462274372577667),
    ("modeling", 11643, 0.018145186826586723),
]
CARD_TOLERANCE = 1e-3


def distilbert_source() -> str:
    local = os.environ.get(ENV_VAR)
    if local:
        path = Path(local).expanduser()
        if not (path / "config.json").is_file():
            pytest.fail(f"{ENV_VAR}={local} is not a checkpoint directory (no config.json)")
        return str(path)
    from app.model_source import in_hf_cache, probe_hub

    unreachable = probe_hub()
    if unreachable is not None and not in_hf_cache(HUB_ID):
        pytest.skip(
            f"distilbert-base-uncased weights are not available: {ENV_VAR} is unset and the hub is not usable "
            f"({unreachable}); set {ENV_VAR}=/path/to/distilbert-base-uncased to run the seed acceptance test"
        )
    return HUB_ID


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    source = distilbert_source()
    from app.server import create_app
    from app.settings import Settings
    from model_export.pipeline import ExportOptions, export_model
    from tests.app.conftest import serving

    out = tmp_path_factory.mktemp("seed") / "distilbert-base-uncased"
    export_model(source, out, ExportOptions(variants=("fp32",), model_id=HUB_ID))
    settings = Settings(model_dir=out, providers=["cpu"], intra_op_threads=1, variant="fp32")
    with serving(create_app(settings)) as test_client:
        yield test_client


@pytest.mark.slow
def test_hello_prompt_reproduces_the_model_card(client: Any) -> None:
    response = client.post("/fill-mask", json={"inputs": "Hello I'm a [MASK] model."})
    assert response.status_code == 200, response.text
    candidates = response.json()
    assert [(c["token_str"], c["token"]) for c in candidates] == [(word, token) for word, token, _ in CARD_HELLO]
    for candidate, (word, _, score) in zip(candidates, CARD_HELLO, strict=True):
        assert abs(candidate["score"] - score) <= CARD_TOLERANCE, (word, candidate["score"], score)
    assert candidates[0]["sequence"] == "hello i'm a role model."


@pytest.mark.slow
def test_feature_extraction_is_768_dimensional(client: Any) -> None:
    response = client.post("/embed", json={"inputs": ["Replace me by any text you'd like.", "Another one."]})
    assert response.status_code == 200, response.text
    vectors = response.json()
    assert len(vectors) == 2 and all(len(vector) == 768 for vector in vectors)
    info = client.get("/info").json()
    assert info["demo"] is False and info["hidden_size"] == 768
