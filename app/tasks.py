"""Task post-processing in numpy: fill-mask as transformers' pipeline answers it, and embeddings."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

Decode = Callable[[Sequence[int], bool], str]


def softmax(logits: np.ndarray) -> np.ndarray:
    shifted = logits - logits.max(axis=-1, keepdims=True)
    exp = np.exp(shifted, dtype=np.float32)
    return exp / exp.sum(axis=-1, keepdims=True)


def target_ids(targets: Sequence[str], token_to_id: Callable[[str], int | None],
               first_piece: Callable[[str], int | None]) -> np.ndarray | None:
    """Like the pipeline's get_target_ids: a target outside the vocabulary uses its first word piece;
    one with no piece at all is dropped; duplicates collapse (in the pipeline's `set` order)."""
    ids = []
    for target in targets:
        token_id = token_to_id(target)
        if token_id is None:
            token_id = first_piece(target)
            if token_id is None:
                continue
        ids.append(token_id)
    unique = list(set(ids))
    return np.asarray(unique, dtype=np.int64) if unique else None


def top_k_indices(values: np.ndarray, k: int) -> np.ndarray:
    """Indices of the k largest values, largest first (ties: lower index first, like torch.topk on CPU).
    k = 0 is empty, as torch's is; a k past the end is capped (torch would raise)."""
    if k < 0:
        raise ValueError(f"k must be at least 0, got {k}")
    k = min(k, values.shape[-1])
    if k < values.shape[-1]:
        candidates = np.argpartition(-values, k - 1)[:k]
    else:
        candidates = np.arange(values.shape[-1])
    return candidates[np.lexsort((candidates, -values[candidates]))]


def fill_mask(
    ids: np.ndarray,
    mask_logits: np.ndarray,
    mask_id: int,
    pad_id: int,
    top_k: int,
    targets: np.ndarray | None,
    decode: Decode,
) -> list[dict[str, Any]] | list[list[dict[str, Any]]]:
    """One input's answer: a list of candidates for one mask, one such list per mask for several.
    top_k = 0 answers an empty list per mask, as the pipeline does."""
    if targets is not None:
        top_k = min(top_k, len(targets))
    positions = np.flatnonzero(ids == mask_id)
    single = len(positions) == 1
    result = []
    for row, position in zip(mask_logits, positions, strict=True):
        probs = softmax(row)
        if targets is not None:
            probs = probs[targets]
        candidates = []
        for index in top_k_indices(probs, top_k):
            token = int(targets[index]) if targets is not None else int(index)
            tokens = ids.copy()
            tokens[position] = token
            # The pipeline drops padding after the candidate goes in: a literal [PAD] in the text and
            # a [PAD] candidate both leave the sequence.
            tokens = tokens[tokens != pad_id]
            candidates.append(
                {
                    "score": float(probs[index]),
                    "token": token,
                    "token_str": decode([token], False),
                    # The pipeline keeps special tokens for several masks so the other masks stay visible.
                    "sequence": decode(tokens.tolist(), single),
                }
            )
        result.append(candidates)
    return result[0] if single else result


def embedding(vector: np.ndarray, normalize: bool, dimensions: int | None) -> list[float]:
    """Matryoshka-style: truncate to `dimensions` first, then L2-normalize what is left."""
    if dimensions is not None:
        vector = vector[:dimensions]
    if normalize:
        norm = float(np.linalg.norm(vector))
        vector = vector / max(norm, 1e-12)
    return vector.astype(np.float32).tolist()
