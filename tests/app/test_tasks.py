"""Task maths in isolation: top-k order, targets, embedding truncation and normalization."""

from __future__ import annotations

import numpy as np
import pytest

from app import tasks


def test_top_k_is_largest_first_with_stable_ties() -> None:
    values = np.array([0.1, 0.5, 0.5, 0.9, 0.0], dtype=np.float32)
    assert tasks.top_k_indices(values, 3).tolist() == [3, 1, 2]
    assert tasks.top_k_indices(values, 10).tolist() == [3, 1, 2, 0, 4]


def test_softmax_matches_the_definition() -> None:
    logits = np.array([[1.0, 2.0, 3.0]], dtype=np.float32)
    expected = np.exp(logits) / np.exp(logits).sum()
    np.testing.assert_allclose(tasks.softmax(logits), expected, rtol=1e-6)


def test_targets_use_the_first_piece_and_drop_what_has_none() -> None:
    vocab = {"tea": 5, "coffee": 6}
    ids = tasks.target_ids(
        ["tea", "teapots", "   ", "tea"], vocab.get, lambda text: {"teapots": 5, "   ": None}.get(text)
    )
    assert ids is not None and sorted(ids.tolist()) == [5]
    assert tasks.target_ids(["   "], vocab.get, lambda text: None) is None


def test_fill_mask_caps_top_k_at_the_number_of_targets_and_builds_sequences() -> None:
    ids = np.array([101, 7, 103, 8, 102])
    logits = np.log(np.array([[0.1, 0.2, 0.3, 0.4]], dtype=np.float32))

    def decode(tokens, skip_special):  # type: ignore[no-untyped-def]
        return " ".join(str(t) for t in tokens if not (skip_special and t in (101, 102)))

    candidates = tasks.mask_candidates(logits, top_k=5, targets=np.array([1, 3]))
    answer = tasks.fill_mask(ids, candidates, 103, 0, decode=decode)
    assert [(c["token"], round(c["score"], 6)) for c in answer] == [(3, 0.4), (1, 0.2)]  # type: ignore[index]
    assert answer[0]["sequence"] == "7 3 8"  # type: ignore[index]


def test_embedding_truncates_then_normalizes() -> None:
    vector = np.array([3.0, 4.0, 12.0], dtype=np.float32)
    np.testing.assert_allclose(tasks.embedding(vector, True, 2), [0.6, 0.8], rtol=1e-6)
    np.testing.assert_allclose(tasks.embedding(vector, False, 2), [3.0, 4.0])
    assert abs(np.linalg.norm(tasks.embedding(vector, True, None)) - 1.0) < 1e-6


SPECIAL = {0: "[PAD]", 101: "[CLS]", 102: "[SEP]", 103: "[MASK]"}


def decode_like_a_tokenizer(tokens, skip_special):  # type: ignore[no-untyped-def]
    return " ".join(SPECIAL.get(t, str(t)) for t in tokens if not (skip_special and t in SPECIAL))


def test_a_pad_candidate_disappears_from_the_sequence_with_several_masks() -> None:
    # The pipeline drops padding after putting the candidate in, so a [PAD] candidate leaves no trace
    # in `sequence`, even where special tokens are kept (several masks).
    ids = np.array([101, 7, 103, 8, 103, 102])
    logits = np.log(np.array([[0.6, 0.1, 0.1, 0.2], [0.2, 0.1, 0.1, 0.6]], dtype=np.float32))
    candidates = tasks.mask_candidates(logits, top_k=2, targets=np.array([0, 3]))
    answer = tasks.fill_mask(ids, candidates, 103, 0, decode=decode_like_a_tokenizer)
    assert [[(c["token"], c["token_str"], c["sequence"]) for c in row] for row in answer] == [  # type: ignore[union-attr]
        [(0, "[PAD]", "[CLS] 7 8 [MASK] [SEP]"), (3, "3", "[CLS] 7 3 8 [MASK] [SEP]")],
        [(3, "3", "[CLS] 7 [MASK] 8 3 [SEP]"), (0, "[PAD]", "[CLS] 7 [MASK] 8 [SEP]")],
    ]


def test_literal_pads_in_the_text_go_too_and_masks_are_found_around_them() -> None:
    ids = np.array([101, 0, 103, 8, 0, 103, 102])
    logits = np.log(np.array([[0.1, 0.2, 0.3, 0.4], [0.4, 0.3, 0.2, 0.1]], dtype=np.float32))
    answer = tasks.fill_mask(ids, tasks.mask_candidates(logits, 1, None), 103, 0, decode=decode_like_a_tokenizer)
    assert [[c["sequence"] for c in row] for row in answer] == [  # type: ignore[union-attr]
        ["[CLS] 3 8 [MASK] [SEP]"],
        ["[CLS] [MASK] 8 [SEP]"],  # the best candidate is [PAD] (id 0), which goes with the padding
    ]


def test_top_k_zero_answers_empty_lists_like_the_pipeline() -> None:
    # torch.topk(probs, 0) is empty, so the pipeline answers [] for one mask and [[], []] for two.
    logits = np.zeros((2, 4), dtype=np.float32)
    two_masks = np.array([101, 103, 7, 103, 102])
    assert tasks.fill_mask(two_masks, tasks.mask_candidates(logits, 0, None), 103, 0, decode_like_a_tokenizer) == [
        [],
        [],
    ]
    one_mask = tasks.mask_candidates(logits[:1], 0, np.array([1, 2]))
    assert tasks.fill_mask(two_masks[:3], one_mask, 103, 0, decode_like_a_tokenizer) == []


def test_top_k_indices_refuses_a_negative_k() -> None:
    # torch.topk raises "selected index k out of range"; numpy slicing would quietly answer len - 1 indices.
    with pytest.raises(ValueError, match="k must be"):
        tasks.top_k_indices(np.array([0.1, 0.5, 0.2]), -1)
