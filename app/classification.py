"""Classifier post-processing in numpy: scores and labels as transformers' text- and token-classification
pipelines answer them, and as TEI's /predict and /rerank do. Pure functions of logits and the tokenizer's
output; the runtime runs them on the worker pool.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from app.tasks import softmax

Function = Literal["sigmoid", "softmax", "none"]
Aggregation = Literal["none", "simple", "first", "average", "max"]


def sigmoid(logits: np.ndarray) -> np.ndarray:
    return (1.0 / (1.0 + np.exp(-logits))).astype(np.float32, copy=False)


def default_function(problem_type: str | None, num_labels: int) -> Function:
    """The text-classification pipeline's rule, in its order: regression -> none; multi-label or a single
    logit -> sigmoid; else softmax. An unset problem_type with one label is sigmoid, as in the pipeline."""
    if problem_type == "regression":
        return "none"
    if problem_type == "multi_label_classification" or num_labels == 1:
        return "sigmoid"
    return "softmax"


def scores(logits: np.ndarray, function: Function) -> np.ndarray:
    if function == "sigmoid":
        return sigmoid(logits)
    if function == "softmax":
        return softmax(logits)
    return logits.astype(np.float32, copy=False)


def pipeline_labels(row: np.ndarray, id2label: dict[int, str], top_k: int | None) -> list[dict[str, Any]]:
    """Every label with its score, highest first (ties keep label order: the pipeline's stable sort),
    cut to top_k unless it is None."""
    ranked = sorted(
        ({"label": id2label[index], "score": float(score)} for index, score in enumerate(row)),
        key=lambda entry: entry["score"],
        reverse=True,
    )
    return ranked if top_k is None else ranked[:top_k]


def pipeline_top1(row: np.ndarray, id2label: dict[int, str]) -> dict[str, Any]:
    """The pipeline's answer when top_k is not given: the first best label alone."""
    best = int(np.argmax(row))
    return {"label": id2label[best], "score": float(row[best])}


def tei_order(values: Sequence[float]) -> list[int]:
    """TEI's order: a stable ascending sort, reversed, so equal scores come last index first."""
    order = sorted(range(len(values)), key=lambda index: values[index])
    order.reverse()
    return order


def tei_scores(logits: np.ndarray, raw_scores: bool) -> np.ndarray:
    """TEI's /predict scores: raw logits, or softmax over several labels and sigmoid for one (whatever
    the checkpoint's problem_type: TEI does not read it)."""
    if raw_scores:
        return logits.astype(np.float32, copy=False)
    return softmax(logits) if logits.shape[-1] > 1 else sigmoid(logits)


def tei_predictions(logits: np.ndarray, id2label: dict[int, str], raw_scores: bool) -> list[dict[str, Any]]:
    values = tei_scores(logits, raw_scores).tolist()
    return [{"score": values[index], "label": id2label[index]} for index in tei_order(values)]


def tei_ranks(logits: Sequence[np.ndarray], texts: Sequence[str] | None, raw_scores: bool) -> list[dict[str, Any]]:
    """One rank per text, best first; the score is the single logit (sigmoid unless raw_scores)."""
    values = [float(tei_scores(row, raw_scores)[0]) for row in logits]
    ranks = []
    for index in tei_order(values):
        rank: dict[str, Any] = {"index": index}
        if texts is not None:
            rank["text"] = texts[index]
        rank["score"] = values[index]
        ranks.append(rank)
    return ranks


@dataclass(frozen=True)
class TokenSpans:
    """One text as the token-classification pipeline sees it: token ids and strings, character offsets
    into the text, and which tokens are special ([CLS], [SEP])."""

    text: str
    ids: np.ndarray  # [tokens] int64
    tokens: list[str]
    offsets: list[tuple[int, int]]
    special: list[bool]


@dataclass(frozen=True)
class WordRules:
    """What the pipeline reads from the tokenizer to tell word starts from continuations and to spell words."""

    unk_id: int | None
    word_aware: bool  # the tokenizer model has a continuing-subword prefix ("##"): word pieces are exact
    tokens_to_string: Callable[[list[str]], str]


def _split_tag(label: str) -> tuple[str, str]:
    if label.startswith("B-"):
        return "B", label[2:]
    if label.startswith("I-"):
        return "I", label[2:]
    return "I", label  # not in B-/I- form: a continuation, as the pipeline treats it


def _pre_entities(spans: TokenSpans, probabilities: np.ndarray, rules: WordRules) -> list[dict[str, Any]]:
    """The pipeline's pre-entities (special tokens left out), with each token's best label and score
    computed once for all tokens: per-token numpy calls would dominate the cost of a long text."""
    text = spans.text
    best = probabilities.argmax(axis=-1).tolist()
    top = probabilities.max(axis=-1).tolist()
    found = []
    for index, row in enumerate(probabilities):
        if spans.special[index]:
            continue
        word = spans.tokens[index]
        start, end = spans.offsets[index]
        covered = text[start:end]
        if rules.word_aware:
            is_subword = len(word) != len(covered)
        else:  # the pipeline's fallback: no space right before the token
            is_subword = start > 0 and " " not in text[start - 1 : start + 1]
        if rules.unk_id is not None and int(spans.ids[index]) == rules.unk_id:
            word, is_subword = covered, False
        found.append({
            "word": word, "scores": row, "best": best[index], "top": top[index],
            "start": start, "end": end, "index": index, "is_subword": is_subword,
        })
    return found


def _word(group: list[dict[str, Any]], strategy: Aggregation, id2label: dict[int, str], rules: WordRules) -> dict[str, Any]:
    if strategy == "average" and len(group) > 1:
        rows = np.stack([entity["scores"] for entity in group])
        average = rows.mean(axis=0) if not np.isnan(rows).any() else np.nanmean(rows, axis=0)
        best, score = int(average.argmax()), float(average.max())
    else:  # first, max, or a word of one piece
        chosen = group[0] if strategy != "max" else max(group, key=lambda entity: entity["top"])
        best, score = chosen["best"], chosen["top"]
    return {
        "entity": id2label[best],
        "score": score,
        "word": rules.tokens_to_string([entity["word"] for entity in group]),
        "start": group[0]["start"],
        "end": group[-1]["end"],
    }


def _words(pre: list[dict[str, Any]], strategy: Aggregation, id2label: dict[int, str], rules: WordRules) -> list[dict[str, Any]]:
    """Tokens of one word take one label (first, max or average over its pieces)."""
    words: list[dict[str, Any]] = []
    group: list[dict[str, Any]] = []
    for entity in pre:
        if group and not entity["is_subword"]:
            words.append(_word(group, strategy, id2label, rules))
            group = []
        group.append(entity)
    if group:
        words.append(_word(group, strategy, id2label, rules))
    return words


def _mean_ignoring_nan(values: list[float]) -> float:
    """np.nanmean of a few floats, as the pipeline scores a group, without numpy's per-call cost."""
    kept = [value for value in values if value == value]
    return sum(kept) / len(kept) if kept else float("nan")


def _group(members: list[dict[str, Any]], rules: WordRules) -> dict[str, Any]:
    return {
        "entity_group": members[0]["entity"].split("-", 1)[-1],
        "score": _mean_ignoring_nan([member["score"] for member in members]),
        "word": rules.tokens_to_string([member["word"] for member in members]),
        "start": members[0]["start"],
        "end": members[-1]["end"],
    }


def _groups(entities: list[dict[str, Any]], rules: WordRules) -> list[dict[str, Any]]:
    """Adjacent entities with the same tag join one group unless the next one begins (B-) a new one."""
    groups: list[dict[str, Any]] = []
    members: list[dict[str, Any]] = []
    for entity in entities:
        if members:
            begins, tag = _split_tag(entity["entity"])
            _, last_tag = _split_tag(members[-1]["entity"])
            if tag != last_tag or begins == "B":
                groups.append(_group(members, rules))
                members = []
        members.append(entity)
    if members:
        groups.append(_group(members, rules))
    return groups


def token_entities(
    spans: TokenSpans,
    logits: np.ndarray,
    id2label: dict[int, str],
    strategy: Aggregation,
    ignore_labels: Sequence[str],
    rules: WordRules,
) -> list[dict[str, Any]]:
    """The token-classification pipeline's answer for one text: per token (`none`, with `index`) or
    grouped into entities (`entity_group`), without the ignored labels."""
    pre = _pre_entities(spans, softmax(logits), rules)
    if strategy in ("none", "simple"):
        entities = []
        for entity in pre:
            entities.append({
                "entity": id2label[entity["best"]],
                "score": entity["top"],
                "index": entity["index"],
                "word": entity["word"],
                "start": entity["start"],
                "end": entity["end"],
            })
    else:
        entities = _words(pre, strategy, id2label, rules)
    if strategy != "none":
        entities = _groups(entities, rules)
    ignored = set(ignore_labels)
    return [entity for entity in entities if entity.get("entity", entity.get("entity_group")) not in ignored]
