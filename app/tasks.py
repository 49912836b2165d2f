"""Task post-processing in numpy: fill-mask as transformers' pipeline answers it, and embeddings."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
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


@dataclass(frozen=True)
class MaskCandidates:
    """The best candidates of each mask of one input: all that survives of its vocabulary-wide rows."""

    tokens: np.ndarray  # [masks, k] int64, best first
    scores: np.ndarray  # [masks, k] float32 probabilities (over the whole vocabulary)


def mask_candidates(mask_logits: np.ndarray, top_k: int, targets: np.ndarray | None) -> MaskCandidates:
    """Softmax over the vocabulary, then the top_k tokens of each row (only among `targets` if given)."""
    probs = softmax(mask_logits) if len(mask_logits) else mask_logits
    if targets is not None:
        probs = probs[:, targets]
    k = min(top_k, probs.shape[-1])
    order = np.stack([top_k_indices(row, k) for row in probs]) if len(probs) else np.zeros((0, k), dtype=np.int64)
    scores = np.take_along_axis(probs, order, axis=-1).astype(np.float32, copy=False)
    tokens = targets[order] if targets is not None else order
    return MaskCandidates(tokens.astype(np.int64, copy=False), scores)


def fill_mask(
    ids: np.ndarray,
    candidates: MaskCandidates,
    mask_id: int,
    pad_id: int,
    decode: Decode,
) -> list[dict[str, Any]] | list[list[dict[str, Any]]]:
    """One input's answer: a list of candidates for one mask, one such list per mask for several.
    top_k = 0 answers an empty list per mask, as the pipeline does."""
    positions = np.flatnonzero(ids == mask_id)
    single = len(positions) == 1
    result = []
    for tokens_row, scores_row, position in zip(candidates.tokens, candidates.scores, positions, strict=True):
        answers = []
        for token, score in zip(tokens_row.tolist(), scores_row.tolist(), strict=True):
            tokens = ids.copy()
            tokens[position] = token
            # The pipeline drops padding after the candidate goes in: a literal [PAD] in the text and
            # a [PAD] candidate both leave the sequence.
            tokens = tokens[tokens != pad_id]
            answers.append(
                {
                    "score": float(score),
                    "token": token,
                    "token_str": decode([token], False),
                    # The pipeline keeps special tokens for several masks so the other masks stay visible.
                    "sequence": decode(tokens.tolist(), single),
                }
            )
        result.append(answers)
    return result[0] if single else result


def embedding(vector: np.ndarray, normalize: bool, dimensions: int | None) -> list[float]:
    """Matryoshka-style: truncate to `dimensions` first, then L2-normalize what is left."""
    if dimensions is not None:
        vector = vector[:dimensions]
    if normalize:
        norm = float(np.linalg.norm(vector))
        vector = vector / max(norm, 1e-12)
    return vector.astype(np.float32).tolist()
