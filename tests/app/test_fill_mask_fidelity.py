"""Fill-mask over HTTP against transformers' FillMaskPipeline in the corners where they could part:
the nesting for each input shape, top_k = 0, and a [PAD] candidate (the pipeline drops padding after
putting the candidate in). POST / answers fill-mask like POST /fill-mask, so both are checked."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from app.server import create_app
from app.settings import Settings
from tests.app.conftest import assert_same_answer, serving

ONE_MASK = "The cat sat on the [MASK]."
TWO_MASKS = "The [MASK] sat on the [MASK]."
ROUTES = ["/fill-mask", "/"]

# The pipeline unwraps a one-element list (FillMaskPipeline.__call__ returns outputs[0]) and answers
# top_k = 0 with empty lists (torch.topk(probs, 0)); the server does neither yet.


@pytest.fixture(scope="module")
def client(tiny_mlm_model_dir: Path) -> Iterator[TestClient]:
    settings = Settings(model_dir=tiny_mlm_model_dir, providers=["cpu"], intra_op_threads=1, max_batch_tokens=512)
    with serving(create_app(settings)) as test_client:
        yield test_client


@pytest.fixture(scope="module")
def pipeline(tiny_mlm_checkpoint: Path) -> Any:
    import transformers

    return transformers.pipeline("fill-mask", model=str(tiny_mlm_checkpoint), tokenizer=str(tiny_mlm_checkpoint))


def answer(client: TestClient, route: str, inputs: str | list[str], parameters: dict[str, Any]) -> Any:
    response = client.post(route, json={"inputs": inputs, "parameters": parameters})
    assert response.status_code == 200, response.text
    return response.json()


@pytest.mark.parametrize("route", ROUTES)
@pytest.mark.parametrize(
    "inputs",
    [
        ONE_MASK,
        TWO_MASKS,
        [ONE_MASK],
        [TWO_MASKS],
        [ONE_MASK, ONE_MASK],
        [TWO_MASKS, TWO_MASKS],
        [ONE_MASK, TWO_MASKS],
    ],
    ids=["str-one-mask", "str-two-masks", "list1-one-mask", "list1-two-masks", "list2-one-mask",
         "list2-two-masks", "list2-mixed"],
)
def test_nesting_follows_the_input_shape(client: TestClient, pipeline: Any, route: str, inputs: Any) -> None:
    assert_same_answer(answer(client, route, inputs, {"top_k": 2}), pipeline(inputs, top_k=2))


@pytest.mark.parametrize("route", ROUTES)
@pytest.mark.parametrize(
    ("inputs", "parameters"),
    [
        (ONE_MASK, {"top_k": 0}),
        ([ONE_MASK, TWO_MASKS], {"top_k": 0}),
        (TWO_MASKS, {"top_k": 0, "targets": ["tea", "coffee"]}),
    ],
    ids=["one-mask", "list2-mixed", "targets"],
)
def test_top_k_zero_answers_empty_lists(
    client: TestClient, pipeline: Any, route: str, inputs: Any, parameters: dict[str, Any]
) -> None:
    expected = pipeline(inputs, **parameters)
    assert_same_answer(answer(client, route, inputs, parameters), expected)


def test_a_negative_top_k_is_refused_where_the_pipeline_raises(client: TestClient, pipeline: Any) -> None:
    with pytest.raises(RuntimeError, match="out of range"):
        pipeline(ONE_MASK, top_k=-1)
    response = client.post("/fill-mask", json={"inputs": ONE_MASK, "parameters": {"top_k": -1}})
    assert response.status_code == 422 and response.json()["error_type"] == "validation"


@pytest.mark.parametrize(
    "inputs",
    [TWO_MASKS, ONE_MASK, "A [PAD] cup of [MASK] and [MASK]."],
    ids=["two-masks", "one-mask", "literal-pad-in-text"],
)
def test_a_pad_candidate_leaves_the_sequence_as_in_the_pipeline(
    client: TestClient, pipeline: Any, inputs: str
) -> None:
    parameters = {"targets": ["[PAD]", "tea", "coffee"]}
    ours = answer(client, "/fill-mask", inputs, parameters)
    assert_same_answer(ours, pipeline(inputs, **parameters))
    rows = ours if isinstance(ours[0], list) else [ours]
    assert all("[PAD]" not in candidate["sequence"] for row in rows for candidate in row)
    assert any(candidate["token_str"] == "[PAD]" for row in rows for candidate in row)
