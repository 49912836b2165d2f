"""The held-out measure: one whole single-wordpiece word masked per sentence, top-1/top-5, the
most-frequent-words baseline and agreement with the teacher."""

from __future__ import annotations

import numpy as np
import pytest

from model_export.distill.evaluate import (
    EvalSet, accuracy, baseline, build_eval_set, split_sentences, whole_words, word_counts,
)


def test_sentences_split_at_their_ends() -> None:
    assert split_sentences('He came. "Did she?" she asked! Mr. Smith waited.  Then 3.5 more') == [
        "He came.", '"Did she?" she asked!', "Mr.", "Smith waited.", "Then 3.5 more"]


def test_whole_words_are_alphabetic_single_pieces(tokenizer, vocabulary) -> None:  # noqa: ANN001
    text = "the unbelievably tall tree, 42 apples"
    tokens = tokenizer.tokenize(text)
    assert tokens[1:3] == ["un", "##bel"]  # a word in pieces: "un" alone is not the word
    flags = whole_words(np.array(tokenizer.convert_tokens_to_ids(tokens)), vocabulary)
    assert [t for t, f in zip(tokens, flags, strict=True) if f] == ["the", "tall", "tree", "apples"]


def test_each_sentence_gives_one_masked_whole_word(tokenizer, vocabulary) -> None:  # noqa: ANN001
    paragraphs = ["The cat sat on the mat. A dog barked loudly at the postman!", "Unbelievably, 42."]
    eval_set = build_eval_set(tokenizer, paragraphs, vocabulary, 64, limit=100)
    assert len(eval_set.sequences) == 2  # the third sentence has no whole word
    for sequence, label in zip(eval_set.sequences, eval_set.labels, strict=True):
        assert (sequence == vocabulary.mask_id).sum() == 1
        assert sequence[0] == vocabulary.cls_id and sequence[-1] == vocabulary.sep_id
        assert vocabulary.word_ids[label]
    again = build_eval_set(tokenizer, paragraphs, vocabulary, 64, limit=100)
    assert np.array_equal(again.labels, eval_set.labels), "the masked word is chosen with a fixed seed"


def test_the_baseline_always_answers_the_five_most_frequent_words(vocabulary) -> None:  # noqa: ANN001
    the, cat, sat, mat, dog, bird = 1996, 4937, 2938, 13523, 3899, 4743
    train = [np.array([101, the, cat, sat, the, mat, 102]), np.array([101, the, dog, the, cat, 102]),
             np.array([101, sat, mat, dog, 102])]
    counts = word_counts(train, vocabulary)
    assert counts[the] == 4 and counts[cat] == 2 and counts[101] == 0
    eval_set = EvalSet([np.array([0])] * 4, np.array([the, bird, cat, sat]))
    result = baseline(counts, eval_set)
    assert (result.top1, result.top5, result.items) == (0.25, 0.75, 4)


def test_accuracy_and_agreement() -> None:
    eval_set = EvalSet([np.array([0])] * 3, np.array([5, 6, 7]))
    student = np.array([[5, 1, 2, 3, 4], [1, 6, 2, 3, 4], [1, 2, 3, 4, 8]])
    teacher = np.array([[5, 0, 0, 0, 0], [6, 0, 0, 0, 0], [1, 0, 0, 0, 0]])
    result = accuracy(student, eval_set, teacher)
    assert (result.top1, result.top5, result.agreement) == (pytest.approx(1 / 3), pytest.approx(2 / 3), pytest.approx(2 / 3))
    assert accuracy(student, eval_set).agreement is None
