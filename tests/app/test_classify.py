"""The classifier routes against transformers' pipelines, on the tiny exported classifiers (fp32).

One server holds a fill-mask model first, then the classifiers: each route must find its model by task,
answer like the pipeline (labels and word spans identical, scores within 1e-4) or like TEI (/predict,
/rerank: field names and order), and refuse what it cannot do with a 4xx JSON error.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from app.server import create_app
from app.settings import Settings
from tests.app.conftest import SCORE_TOLERANCE, serving

SENTIMENT, TOPICS, RERANKER = "tiny-distilbert-sentiment", "tiny-bert-topics", "tiny-bert-reranker"
NER, BERT_NER = "tiny-distilbert-ner", "tiny-bert-ner"
MLM = "tiny-distilbert-mlm"
MAX_INPUTS = 6

SENTENCES = [
    "I loved this movie, the acting was wonderful.",
    "The service at the restaurant was painfully slow.",
    "Quantum computers could break today's encryption.",
]
PAIRS = [
    ("A man is playing a guitar.", "Someone is making music."),
    ("The cat sleeps on the sofa.", "Stock markets fell sharply on Monday."),
]
# Names, places and words the vocabulary splits into pieces, so word aggregation has work to do.
NER_TEXTS = [
    "My name is Wolfgang Schüssel and I live in Zhangjiakou, near Beijing.",
    "Angela Merkel met Emmanuel Macron at the Élysée Palace in Paris.",
    "Kubernetes was announced by Google engineers in Mountain View.",
]
STRATEGIES = ["none", "simple", "first", "average", "max"]


def checkpoint_of(model_dir: Path) -> Path:
    """The PyTorch checkpoint the tiny classifier was exported from (tests/tiny_models.py keeps it)."""
    return model_dir.parent / f"{model_dir.name}.checkpoint"


@pytest.fixture(scope="module")
def model_dirs(tiny_classifier_dir: Callable[..., Path], tiny_mlm_model_dir: Path) -> dict[str, Path]:
    return {
        MLM: tiny_mlm_model_dir,
        SENTIMENT: tiny_classifier_dir("sentiment"),
        TOPICS: tiny_classifier_dir("topics", "bert"),
        RERANKER: tiny_classifier_dir("reranker", "bert"),
        NER: tiny_classifier_dir("ner"),
        BERT_NER: tiny_classifier_dir("ner", "bert"),
    }


@pytest.fixture(scope="module")
def client(model_dirs: dict[str, Path]) -> Iterator[TestClient]:
    # The fill-mask model first: unnamed classifier requests must still find a classifier.
    settings = Settings(
        model_dir=list(model_dirs.values()), providers=["cpu"], intra_op_threads=1, max_wait_ms=0,
        max_inputs_per_request=MAX_INPUTS,
    )
    with serving(create_app(settings)) as test_client:
        yield test_client


@pytest.fixture(scope="module")
def pipeline_for(model_dirs: dict[str, Path]) -> Callable[[str], Any]:
    """transformers' pipeline for a model id, on the checkpoint the model was exported from (cached)."""
    from transformers import pipeline

    made: dict[str, Any] = {}

    def get(model: str) -> Any:
        if model not in made:
            task = "token-classification" if model in (NER, BERT_NER) else "text-classification"
            made[model] = pipeline(task, model=str(checkpoint_of(model_dirs[model])), device="cpu")
        return made[model]

    return get


def assert_same(ours: Any, theirs: Any, where: str = "") -> None:
    """Same nesting, keys and order; every value equal but scores, which are within the tolerance."""
    if isinstance(theirs, list):
        assert isinstance(ours, list) and len(ours) == len(theirs), f"{where}: {ours!r} vs {theirs!r}"
        for index, (a, b) in enumerate(zip(ours, theirs, strict=True)):
            assert_same(a, b, f"{where}[{index}]")
        return
    assert isinstance(ours, dict) and list(ours) == list(theirs), f"{where}: {ours!r} vs {theirs!r}"
    for key, value in theirs.items():
        if key == "score":
            assert abs(ours[key] - float(value)) <= SCORE_TOLERANCE, f"{where}.score: {ours!r} vs {theirs!r}"
        else:
            assert ours[key] == (value.item() if hasattr(value, "item") else value), f"{where}.{key}: {ours!r} vs {theirs!r}"


def post(client: TestClient, path: str, body: dict[str, Any]) -> Any:
    response = client.post(path, json=body)
    assert response.status_code == 200, response.text
    return response.json()


def as_pipeline_input(item: Any) -> Any:
    return {"text": item[0], "text_pair": item[1]} if isinstance(item, tuple) else item


class TestClassify:
    """POST /classify is the text-classification pipeline: its shapes (including the best label alone
    when top_k is left out), its default function per problem type, top_k and function_to_apply."""

    @pytest.mark.parametrize("model", [SENTIMENT, TOPICS, RERANKER])
    @pytest.mark.parametrize(
        "inputs",
        [SENTENCES[0], SENTENCES, PAIRS[0], [SENTENCES[1], PAIRS[1], PAIRS[0]]],
        ids=["text", "texts", "pair", "mixed"],
    )
    @pytest.mark.parametrize(
        "parameters",
        [{}, {"top_k": 2}, {"top_k": None}, {"top_k": None, "function_to_apply": "softmax"},
         {"function_to_apply": "none"}, {"top_k": 1, "function_to_apply": "sigmoid"}],
        ids=["default", "top2", "all", "softmax", "none", "sigmoid"],
    )
    def test_same_as_the_pipeline(
        self, client: TestClient, pipeline_for: Callable[[str], Any], model: str, inputs: Any, parameters: dict[str, Any],
    ) -> None:
        body_inputs = [as_pipeline_input(item) for item in inputs] if isinstance(inputs, list) else as_pipeline_input(inputs)
        ours = post(client, "/classify", {"inputs": body_inputs, "model": model, "parameters": parameters})
        theirs = pipeline_for(model)(body_inputs, **parameters)
        assert_same(ours, theirs)

    def test_unnamed_finds_the_first_classifier(self, client: TestClient) -> None:
        body = {"inputs": SENTENCES[0]}
        assert client.post("/classify", json=body).json() == post(client, "/classify", body | {"model": SENTIMENT})

    def test_top_k_zero_is_an_empty_list(self, client: TestClient) -> None:
        assert post(client, "/classify", {"inputs": SENTENCES[0], "parameters": {"top_k": 0}}) == []


def tei_expected(pipe: Any, item: Any, raw_scores: bool) -> list[dict[str, Any]]:
    """TEI's /predict semantics from the pipeline: softmax over several labels, sigmoid for one, or raw."""
    labels = len(pipe.model.config.id2label)
    function = "none" if raw_scores else "softmax" if labels > 1 else "sigmoid"
    answer = pipe(as_pipeline_input(item), top_k=None, function_to_apply=function)
    return [{"score": entry["score"], "label": entry["label"]} for entry in answer]


class TestPredict:
    """POST /predict answers as TEI: {score, label} for every label, best first; a batch is lists of lists."""

    @pytest.mark.parametrize("model", [SENTIMENT, TOPICS, RERANKER])
    @pytest.mark.parametrize("raw_scores", [False, True])
    def test_text_pair_and_batch(
        self, client: TestClient, pipeline_for: Callable[[str], Any], model: str, raw_scores: bool
    ) -> None:
        pipe = pipeline_for(model)
        single = post(client, "/predict", {"inputs": SENTENCES[0], "model": model, "raw_scores": raw_scores})
        assert_same(single, tei_expected(pipe, SENTENCES[0], raw_scores))
        pair = post(client, "/predict", {"inputs": list(PAIRS[0]), "model": model, "raw_scores": raw_scores})
        assert_same(pair, tei_expected(pipe, PAIRS[0], raw_scores))
        batch = [[SENTENCES[1]], list(PAIRS[1]), [SENTENCES[2]]]
        answer = post(client, "/predict", {"inputs": batch, "model": model, "raw_scores": raw_scores})
        expected = [tei_expected(pipe, item[0] if len(item) == 1 else tuple(item), raw_scores) for item in batch]
        assert_same(answer, expected)

    def test_a_one_text_list_is_a_batch_of_one(self, client: TestClient) -> None:
        assert post(client, "/predict", {"inputs": [[SENTENCES[0]]]}) == [post(client, "/predict", {"inputs": SENTENCES[0]})]

    def test_truncation_cuts_the_longer_text_first(self, client: TestClient, pipeline_for: Callable[[str], Any]) -> None:
        long_text = " ".join(SENTENCES * 12)  # about 300 tokens: over the tiny models' 128
        body = {"inputs": [SENTENCES[0], long_text], "model": TOPICS}
        refused = client.post("/predict", json=body)
        assert refused.status_code == 422 and "set truncate to true" in refused.json()["error"]
        answer = post(client, "/predict", body | {"truncate": True})
        theirs = pipeline_for(TOPICS)(
            {"text": SENTENCES[0], "text_pair": long_text}, top_k=None, function_to_apply="softmax",
            truncation=True, max_length=128,
        )
        assert_same(answer, [{"score": entry["score"], "label": entry["label"]} for entry in theirs])


class TestRerank:
    """POST /rerank answers as TEI: [{index, text?, score}] best first, each text scored with the query."""

    QUERY = "Which animal likes to sleep on furniture?"
    TEXTS = ["The cat sleeps on the sofa.", "Stock markets fell sharply on Monday.", "Dogs bark at night.", "A sofa is soft."]

    @pytest.mark.parametrize("raw_scores", [False, True])
    @pytest.mark.parametrize("return_text", [False, True])
    def test_ranks_as_the_pipeline_scores_pairs(
        self, client: TestClient, pipeline_for: Callable[[str], Any], raw_scores: bool, return_text: bool
    ) -> None:
        pipe = pipeline_for(RERANKER)
        scores = [
            pipe({"text": self.QUERY, "text_pair": text}, function_to_apply="none" if raw_scores else "sigmoid")["score"]
            for text in self.TEXTS
        ]
        order = sorted(range(len(scores)), key=lambda index: scores[index], reverse=True)
        expected = [
            {"index": index, **({"text": self.TEXTS[index]} if return_text else {}), "score": scores[index]} for index in order
        ]
        body = {"query": self.QUERY, "texts": self.TEXTS, "raw_scores": raw_scores, "return_text": return_text}
        assert_same(post(client, "/rerank", body), expected)

    def test_only_single_logit_models_rerank(self, client: TestClient) -> None:
        response = client.post("/rerank", json={"query": "q", "texts": ["a"], "model": SENTIMENT})
        assert response.status_code == 422
        assert response.json()["error"] == f"the model {SENTIMENT!r} does not serve rerank; models that do: {RERANKER}"


def same_entities(ours: Any, theirs: Any) -> None:
    """Entities as the pipeline gives them; its scores are numpy floats and it drops nothing we keep."""
    assert_same(ours, json.loads(json.dumps(theirs, default=float)))


class TestTokenClassification:
    """POST /token-classification is the token-classification pipeline: words, spans and labels identical."""

    @pytest.mark.parametrize("model", [NER, BERT_NER])
    @pytest.mark.parametrize("strategy", STRATEGIES)
    def test_same_as_the_pipeline(
        self, client: TestClient, pipeline_for: Callable[[str], Any], model: str, strategy: str
    ) -> None:
        pipe = pipeline_for(model)
        for ignore in ([], ["O"], ["O", "B-PER"]):
            parameters = {"aggregation_strategy": strategy, "ignore_labels": ignore}
            ours = post(client, "/token-classification", {"inputs": NER_TEXTS, "model": model, "parameters": parameters})
            same_entities(ours, pipe(NER_TEXTS, aggregation_strategy=strategy, ignore_labels=ignore))

    def test_defaults_and_a_single_text(self, client: TestClient, pipeline_for: Callable[[str], Any]) -> None:
        ours = post(client, "/token-classification", {"inputs": NER_TEXTS[0]})
        same_entities(ours, pipeline_for(NER)(NER_TEXTS[0]))

    def test_a_long_text_is_cut_at_the_max_length_as_the_pipeline_cuts_it(
        self, client: TestClient, model_dirs: dict[str, Path]
    ) -> None:
        from transformers import AutoTokenizer, pipeline

        checkpoint = str(checkpoint_of(model_dirs[NER]))
        # The pipeline truncates at its tokenizer's model_max_length: the tiny models' 128 positions here.
        pipe = pipeline("token-classification", model=checkpoint, tokenizer=AutoTokenizer.from_pretrained(checkpoint, model_max_length=128))
        text = " ".join(NER_TEXTS * 8)  # about 300 tokens
        ours = post(client, "/token-classification", {"inputs": text, "parameters": {"ignore_labels": []}})
        same_entities(ours, pipe(text, ignore_labels=[]))
        assert len(ours) == 126  # [CLS] and [SEP] kept, the rest cut

    def test_words_have_pieces_to_aggregate(self, client: TestClient) -> None:
        """The texts must exercise word aggregation, or `first`/`average`/`max` would prove nothing."""
        tokens = post(client, "/token-classification", {"inputs": NER_TEXTS, "parameters": {"ignore_labels": []}})
        assert any(entity["word"].startswith("##") for text in tokens for entity in text)


class TestInferenceClientRoot:
    """POST / answers a classifier's task when the request names a classifier (InferenceClient's shapes)."""

    def test_text_classification(self, client: TestClient, pipeline_for: Callable[[str], Any]) -> None:
        answer = post(client, f"/?model={TOPICS}", {"inputs": SENTENCES[0], "parameters": {}})
        assert_same(answer, [pipeline_for(TOPICS)(SENTENCES[0], top_k=None)])
        cut = post(client, f"/?model={TOPICS}", {"inputs": SENTENCES[0], "parameters": {"top_k": 2, "function_to_apply": "softmax"}})
        assert_same(cut, [pipeline_for(TOPICS)(SENTENCES[0], top_k=2, function_to_apply="softmax")])

    def test_token_classification_groups_by_default(self, client: TestClient, pipeline_for: Callable[[str], Any]) -> None:
        answer = post(client, "/", {"inputs": NER_TEXTS[1], "model": NER, "parameters": {}})
        same_entities(answer, pipeline_for(NER)(NER_TEXTS[1], aggregation_strategy="simple"))
        tokens = post(client, "/", {"inputs": NER_TEXTS[1], "model": NER, "parameters": {"aggregation_strategy": "none"}})
        same_entities(tokens, pipeline_for(NER)(NER_TEXTS[1]))

    def test_unnamed_is_the_first_model_fill_mask_here(self, client: TestClient) -> None:
        body = {"inputs": "Paris is the [MASK] of France.", "parameters": {}}
        assert post(client, "/", body) == post(client, "/fill-mask", body)

    def test_a_classifier_body_error_names_the_field(self, client: TestClient) -> None:
        response = client.post(f"/?model={NER}", json={"inputs": "x", "parameters": {"aggregation_strategy": "best"}})
        assert response.status_code == 422
        assert response.json()["error"].startswith("body.parameters.aggregation_strategy:")


class TestBesideFillMask:
    """Classifiers and a fill-mask model in one server: each route goes to a model that has its task."""

    @pytest.mark.parametrize(
        ("path", "body", "task", "serving"),
        [
            ("/classify", {"inputs": "x"}, "text-classification", [SENTIMENT, TOPICS, RERANKER]),
            ("/predict", {"inputs": "x"}, "text-classification", [SENTIMENT, TOPICS, RERANKER]),
            ("/rerank", {"query": "x", "texts": ["y"]}, "rerank", [RERANKER]),
            ("/token-classification", {"inputs": "x"}, "token-classification", [NER, BERT_NER]),
        ],
    )
    def test_a_classifier_route_on_the_fill_mask_model_names_the_models_that_serve_it(
        self, client: TestClient, path: str, body: dict[str, Any], task: str, serving: list[str]
    ) -> None:
        response = client.post(path, json=body | {"model": MLM})
        assert response.status_code == 422
        assert response.json() == {
            "error": f"the model {MLM!r} does not serve {task}; models that do: {', '.join(serving)}",
            "error_type": "validation",
        }

    def test_fill_mask_and_embed_still_find_the_mlm(self, client: TestClient) -> None:
        assert client.post("/fill-mask", json={"inputs": "a [MASK] day"}).status_code == 200
        assert client.post("/embed", json={"inputs": "a day"}).status_code == 200
        assert client.post("/fill-mask", json={"inputs": "a [MASK] day", "model": SENTIMENT}).status_code == 422

    def test_info_describes_each_classifier(self, client: TestClient) -> None:
        models = {model["model_id"]: model for model in client.get("/info").json()["models"]}
        assert models[SENTIMENT]["model_type"] == {
            "classifier": {
                "id2label": {"0": "negative", "1": "neutral", "2": "positive"},
                "label2id": {"negative": 0, "neutral": 1, "positive": 2},
            }
        }
        assert list(models[RERANKER]["model_type"]) == ["reranker"]
        assert list(models[NER]["model_type"]) == ["token_classifier"]
        assert models[MLM]["model_type"] == {"fill_mask": {"pooling": "mean"}}

    def test_inputs_are_counted_per_task(self, client: TestClient) -> None:
        post(client, "/token-classification", {"inputs": ["one text", "another text"]})
        metrics = client.get("/metrics").text
        assert f'distilserve_inputs_total{{model="{NER}",task="token-classification"}}' in metrics


class TestBadInputs:
    @pytest.mark.parametrize(
        ("path", "body", "status", "fragment"),
        [
            ("/rerank", {"texts": ["a"]}, 422, "body.query: Field required"),
            ("/rerank", {"query": "q", "texts": []}, 422, "`texts` cannot be empty"),
            ("/rerank", {"query": "q", "texts": ["t"] * (MAX_INPUTS + 1)}, 422, f"{MAX_INPUTS + 1} inputs in one request"),
            ("/predict", {"inputs": [[f"t{i}"] for i in range(MAX_INPUTS + 1)]}, 422, "this server accepts at most"),
            ("/predict", {"inputs": ["a", "b", "c"]}, 422, "body.inputs"),
            ("/predict", {"inputs": [["a", "b", "c"]]}, 422, "body.inputs"),
            ("/predict", {"inputs": " "}, 400, "only whitespace"),
            ("/predict", {"inputs": ["a", ""]}, 400, "input 0 (text_pair) is an empty string"),
            ("/rerank", {"query": "", "texts": ["a"]}, 400, "(text) is an empty string"),
            ("/classify", {"inputs": "a", "parameters": {"top_k": -1}}, 422, "top_k must be at least 0"),
            ("/classify", {"inputs": "a", "parameters": {"function_to_apply": "tanh"}}, 422, "function_to_apply"),
            ("/classify", {"inputs": {"text_pair": "b"}}, 422, "body.inputs"),
            ("/classify", {"inputs": []}, 400, "`inputs` cannot be empty"),
            ("/token-classification", {"inputs": {"text": "a", "text_pair": "b"}}, 422, "body.inputs"),
            ("/token-classification", {"inputs": "a", "parameters": {"aggregation_strategy": "best"}}, 422, "aggregation_strategy"),
            ("/classify", {"inputs": "a", "model": "nope"}, 404, "'nope' is not served here"),
        ],
    )
    def test_refused_with_a_json_error(
        self, client: TestClient, path: str, body: dict[str, Any], status: int, fragment: str
    ) -> None:
        response = client.post(path, json=body)
        assert response.status_code == status, response.text
        assert set(response.json()) == {"error", "error_type"}
        assert fragment in response.json()["error"]


@pytest.fixture(scope="module")
def single_text_model(tiny_classifier_dir: Callable[..., Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The sentiment model, its manifest saying its tokenizer builds no pairs (pair_input false)."""
    directory = tmp_path_factory.mktemp("single-text") / "model"
    shutil.copytree(tiny_classifier_dir("sentiment"), directory)
    manifest = json.loads((directory / "manifest.json").read_text())
    manifest["model_id"] = "single-text"
    manifest["classifier"]["pair_input"] = False
    (directory / "manifest.json").write_text(json.dumps(manifest))
    return directory


def test_a_pair_to_a_single_text_model_is_refused(single_text_model: Path) -> None:
    settings = Settings(model_dir=[single_text_model], providers=["cpu"], intra_op_threads=1, warmup=False)
    with serving(create_app(settings)) as client:
        for path, body in (
            ("/predict", {"inputs": ["a text", "its pair"]}),
            ("/classify", {"inputs": {"text": "a text", "text_pair": "its pair"}}),
        ):
            response = client.post(path, json=body)
            assert response.status_code == 422, response.text
            assert response.json()["error"] == "the model 'single-text' classifies single texts; it takes no sentence pairs"
        assert client.post("/predict", json={"inputs": "a text"}).status_code == 200
