"""Classifier requests on one model's runtime: TEI's /predict and /rerank, and transformers' text- and
token-classification pipelines.

Each goes the runtime's way: admit -> tokenize on the workers (texts, pairs, or tokens with offsets)
-> batcher -> backend logits -> scores, labels and entities on the workers (app/classification.py).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from model_export.manifest import Classifier

from app import classification
from app.admission import estimate_tokens
from app.backend import TokenItem, Wants
from app.classification import Aggregation, Function, TokenSpans
from app.errors import InvalidInput
from app.runtime import ModelRuntime, Timings
from app.tokenizer import Direction, Pair

TEXT_CLASSIFICATION = "text-classification"
TOKEN_CLASSIFICATION = "token-classification"

# Classifier graphs have one output, the logits; nothing else is asked of them.
_LOGITS_ONLY = Wants(embedding=False)


def classifier_of(runtime: ModelRuntime) -> Classifier:
    classifier = runtime.manifest.classifier
    assert classifier is not None  # the registry routes classification only to models whose task it is
    return classifier


def _texts_of(inputs: Sequence[str | Pair]) -> list[str]:
    """Each input as one string, for the admission estimate and the size of the tokenizing work."""
    return [item if isinstance(item, str) else " ".join(item) for item in inputs]


async def _text_logits(
    runtime: ModelRuntime, inputs: Sequence[str | Pair], truncate: bool, direction: Direction
) -> tuple[list[np.ndarray], Timings]:
    if not classifier_of(runtime).pair_input and any(not isinstance(item, str) for item in inputs):
        raise InvalidInput(f"the model {runtime.model_id!r} classifies single texts; it takes no sentence pairs")
    texts = _texts_of(inputs)

    def encode() -> tuple[list[TokenItem], None]:
        encoded = runtime.tokenizer.encode_pairs(inputs, truncate=truncate, direction=direction)
        items = [
            TokenItem(ids, _LOGITS_ONLY, None if isinstance(item, str) else type_ids)
            for item, (ids, type_ids) in zip(inputs, encoded, strict=True)
        ]
        return items, None

    logits, _, timings = await runtime.classifier_logits(
        len(inputs), estimate_tokens(texts, runtime.tokenizer.max_length), sum(map(len, texts)), encode,
        TEXT_CLASSIFICATION,
    )
    return logits, timings


async def predict(
    runtime: ModelRuntime, inputs: Sequence[str | Pair], *, raw_scores: bool, truncate: bool, direction: Direction
) -> tuple[list[list[dict[str, Any]]], Timings]:
    """TEI's /predict: every label per input, best first."""
    logits, timings = await _text_logits(runtime, inputs, truncate, direction)
    id2label = classifier_of(runtime).id2label
    answers = await runtime.workers.run_sized(
        sum(row.size for row in logits),
        lambda: [classification.tei_predictions(row, id2label, raw_scores) for row in logits],
    )
    return answers, timings


async def rerank(
    runtime: ModelRuntime,
    query: str,
    texts: Sequence[str],
    *,
    raw_scores: bool,
    truncate: bool,
    direction: Direction,
    return_text: bool,
) -> tuple[list[dict[str, Any]], Timings]:
    """TEI's /rerank: each text scored as the pair (query, text), best first."""
    if not texts:
        raise InvalidInput("`texts` cannot be empty")  # TEI's message and kind
    logits, timings = await _text_logits(runtime, [(query, text) for text in texts], truncate, direction)
    ranks = await runtime.workers.run_sized(
        len(logits), classification.tei_ranks, logits, texts if return_text else None, raw_scores
    )
    return ranks, timings


async def classify(
    runtime: ModelRuntime,
    inputs: Sequence[str | Pair],
    *,
    function: Function | None,
    top_k: int | None,
    best_only: bool,
) -> tuple[list[Any], Timings]:
    """The text-classification pipeline: per input, the best label alone (`best_only`, the pipeline's
    answer when top_k is not given) or the labels best first, cut to top_k unless it is None."""
    if top_k is not None and top_k < 0:
        raise InvalidInput(f"top_k must be at least 0, got {top_k}")
    logits, timings = await _text_logits(runtime, inputs, False, "right")
    classifier = classifier_of(runtime)
    applied = function or classification.default_function(classifier.problem_type, classifier.num_labels)

    def answers() -> list[Any]:
        rows = [classification.scores(row, applied) for row in logits]
        if best_only:
            return [classification.pipeline_top1(row, classifier.id2label) for row in rows]
        return [classification.pipeline_labels(row, classifier.id2label, top_k) for row in rows]

    return await runtime.workers.run_sized(sum(row.size for row in logits), answers), timings


async def token_classify(
    runtime: ModelRuntime, texts: Sequence[str], *, strategy: Aggregation, ignore_labels: Sequence[str]
) -> tuple[list[list[dict[str, Any]]], Timings]:
    """The token-classification pipeline: per text, its tokens or its entities, with character spans."""
    tokenizer = runtime.tokenizer

    def encode() -> tuple[list[TokenItem], list[TokenSpans]]:
        spans = tokenizer.encode_spans(texts)
        return [TokenItem(span.ids, _LOGITS_ONLY) for span in spans], spans

    logits, spans, timings = await runtime.classifier_logits(
        len(texts), estimate_tokens(texts, tokenizer.max_length), sum(map(len, texts)), encode, TOKEN_CLASSIFICATION
    )
    id2label, rules = classifier_of(runtime).id2label, tokenizer.word_rules()
    entities = await runtime.workers.run_sized(
        sum(row.size for row in logits),
        lambda: [
            classification.token_entities(span, row, id2label, strategy, ignore_labels, rules)
            for span, row in zip(spans, logits, strict=True)
        ],
    )
    return entities, timings
