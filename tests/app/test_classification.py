"""The classifier maths on hand-made logits: which function each problem type gets, the two sort orders
(the pipeline's and TEI's differ on ties), and the token-classification pipeline's grouping rules."""

from __future__ import annotations

import numpy as np
import pytest

from app import classification as c

LABELS = {0: "O", 1: "B-PER", 2: "I-PER", 3: "B-LOC"}


@pytest.mark.parametrize(
    ("problem_type", "labels", "function"),
    [
        ("regression", 1, "none"),
        ("regression", 3, "none"),
        ("multi_label_classification", 5, "sigmoid"),
        (None, 1, "sigmoid"),  # a cross-encoder's config: the pipeline (and TEI) answer sigmoid
        ("single_label_classification", 1, "sigmoid"),  # the pipeline checks one label before single-label
        ("single_label_classification", 3, "softmax"),
        (None, 3, "softmax"),
    ],
)
def test_default_function_is_the_pipelines(problem_type: str | None, labels: int, function: str) -> None:
    assert c.default_function(problem_type, labels) == function


def test_ties_keep_label_order_in_the_pipeline_but_reverse_in_tei() -> None:
    row = np.array([0.25, 0.5, 0.25], dtype=np.float32)
    names = {0: "a", 1: "b", 2: "c"}
    assert [entry["label"] for entry in c.pipeline_labels(row, names, None)] == ["b", "a", "c"]
    assert [entry["label"] for entry in c.tei_predictions(np.log(row), names, raw_scores=False)] == ["b", "c", "a"]


def test_tei_scores_softmax_several_labels_sigmoid_one() -> None:
    np.testing.assert_allclose(c.tei_scores(np.array([0.0, 0.0], dtype=np.float32), False), [0.5, 0.5])
    np.testing.assert_allclose(c.tei_scores(np.array([2.0], dtype=np.float32), False), [1 / (1 + np.exp(-2.0))], rtol=1e-6)
    np.testing.assert_array_equal(c.tei_scores(np.array([2.0, -1.0], dtype=np.float32), True), [2.0, -1.0])


def test_ranks_put_text_between_index_and_score() -> None:
    ranks = c.tei_ranks([np.array([-1.0], dtype=np.float32), np.array([3.0], dtype=np.float32)], ["x", "y"], True)
    assert ranks == [{"index": 1, "text": "y", "score": 3.0}, {"index": 0, "text": "x", "score": -1.0}]
    assert list(c.tei_ranks([np.array([0.0], dtype=np.float32)], None, False)[0]) == ["index", "score"]


def spans(text: str, pieces: list[tuple[str, int, int]]) -> c.TokenSpans:
    """[CLS] pieces [SEP], with made-up ids (unk is 100)."""
    tokens = ["[CLS]", *(piece for piece, _, _ in pieces), "[SEP]"]
    ids = np.array([101, *(100 if piece == "[UNK]" else 2000 + i for i, (piece, _, _) in enumerate(pieces)), 102])
    offsets = [(0, 0), *((start, end) for _, start, end in pieces), (0, 0)]
    return c.TokenSpans(text, ids, tokens, offsets, [True, *([False] * len(pieces)), True])


RULES = c.WordRules(unk_id=100, word_aware=True, tokens_to_string=lambda tokens: " ".join(tokens).replace(" ##", ""))


def one_hot(*labels: int, sure: float = 4.0) -> np.ndarray:
    """Logits per token ([CLS] and [SEP] included) that make each token's label `labels[i]`."""
    rows = np.zeros((len(labels) + 2, len(LABELS)), dtype=np.float32)
    for row, label in enumerate(labels, start=1):
        rows[row, label] = sure
    return rows


def test_b_starts_a_new_group_and_i_continues_it() -> None:
    text = "Ann Lee Bob"
    tokens = spans(text, [("ann", 0, 3), ("lee", 4, 7), ("bob", 8, 11)])
    groups = c.token_entities(tokens, one_hot(1, 2, 1), LABELS, "simple", ["O"], RULES)
    assert [(g["entity_group"], g["word"], g["start"], g["end"]) for g in groups] == [
        ("PER", "ann lee", 0, 7), ("PER", "bob", 8, 11),
    ]


def test_first_gives_a_word_its_first_pieces_label() -> None:
    text = "Zhangjiakou"
    tokens = spans(text, [("zhang", 0, 5), ("##jia", 5, 8), ("##kou", 8, 11)])
    logits = one_hot(3, 0, 0)
    (word,) = c.token_entities(tokens, logits, LABELS, "first", ["O"], RULES)
    assert (word["entity_group"], word["word"], word["start"], word["end"]) == ("LOC", "zhangjiakou", 0, 11)
    assert c.token_entities(tokens, logits, LABELS, "average", ["O"], RULES) == []  # two pieces of three say O


def test_an_unknown_token_is_its_own_word_spelled_as_in_the_text() -> None:
    text = "I ♥ it"
    tokens = spans(text, [("i", 0, 1), ("[UNK]", 2, 3), ("it", 4, 6)])
    entities = c.token_entities(tokens, one_hot(0, 1, 0), LABELS, "none", ["O"], RULES)
    assert entities == [{"entity": "B-PER", "score": entities[0]["score"], "index": 2, "word": "♥", "start": 2, "end": 3}]


def test_without_a_subword_prefix_a_token_glued_to_the_previous_one_continues_its_word() -> None:
    rules = c.WordRules(unk_id=None, word_aware=False, tokens_to_string=" ".join)
    text = "New-York"
    tokens = spans(text, [("New", 0, 3), ("-", 3, 4), ("York", 4, 8)])
    (word,) = c.token_entities(tokens, one_hot(3, 0, 0), LABELS, "first", ["O"], rules)
    assert (word["word"], word["start"], word["end"]) == ("New - York", 0, 8)
