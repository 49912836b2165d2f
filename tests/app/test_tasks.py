"""Task maths in isolation: top-k order, targets, embedding truncation and normalization."""

from __future__ import annotations

import numpy as np

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
