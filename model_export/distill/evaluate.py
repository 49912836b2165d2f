"""Held-out masked-word accuracy, the most-frequent-words baseline, and student-teacher agreement.

Each held-out sentence contributes one item: one whole alphabetic word that is a single wordpiece,
chosen with a fixed seed, replaced by [MASK]. Top-1/top-5 is over those items; the baseline always
answers the five words most frequent in the training sequences; agreement is how often the
student's top-1 equals the teacher's.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch

from model_export.distill.data import group_by_length, pad
from model_export.distill.teacher import Vocabulary

EVAL_SEED = 20_240_601
_SENTENCE_END = re.compile(r"(?<=[.!?])[\"')\]]*\s+(?=[\"'(\[]?[A-Z])")


@dataclass(frozen=True)
class EvalSet:
    sequences: list[np.ndarray]  # [CLS] ... [MASK] ... [SEP]
    labels: np.ndarray  # the masked word's id, one per sequence


@dataclass(frozen=True)
class Accuracy:
    top1: float
    top5: float
    items: int
    agreement: float | None = None  # top-1 equal to the teacher's

    def as_dict(self) -> dict[str, Any]:
        return {key: round(value, 4) if isinstance(value, float) else value for key, value in asdict(self).items()}


def split_sentences(paragraph: str) -> list[str]:
    return [s.strip() for s in _SENTENCE_END.split(paragraph) if s.strip()]


def whole_words(ids: np.ndarray, vocabulary: Vocabulary) -> np.ndarray:
    """Bool per position: a single-wordpiece alphabetic word (the next piece does not continue it)."""
    following = np.append(ids[1:], vocabulary.sep_id)
    return vocabulary.word_ids[ids] & ~vocabulary.continuation_ids[following]


def build_eval_set(tokenizer: Any, paragraphs: Sequence[str], vocabulary: Vocabulary, max_length: int, limit: int) -> EvalSet:
    rng = np.random.default_rng(EVAL_SEED)
    sentences = [s for p in paragraphs for s in split_sentences(p)]
    sequences, labels = [], []
    for ids in tokenizer(sentences or [""], add_special_tokens=False)["input_ids"]:
        ids = np.array(ids, dtype=np.int64)
        candidates = np.flatnonzero(whole_words(ids, vocabulary)) if 2 <= len(ids) <= max_length - 2 else []
        if len(candidates) == 0:
            continue
        position = int(rng.choice(candidates))
        labels.append(ids[position])
        ids[position] = vocabulary.mask_id
        sequences.append(np.concatenate([[vocabulary.cls_id], ids, [vocabulary.sep_id]]))
        if len(sequences) == limit:
            break
    return EvalSet(sequences, np.array(labels, dtype=np.int64))


def word_counts(sequences: Sequence[np.ndarray], vocabulary: Vocabulary) -> np.ndarray:
    counts = np.zeros(vocabulary.size, dtype=np.int64)
    for ids in sequences:
        np.add.at(counts, ids[whole_words(ids, vocabulary)], 1)
    return counts


def baseline(counts: np.ndarray, eval_set: EvalSet) -> Accuracy:
    """Always the five most frequent training words."""
    ranked = np.argsort(-counts, kind="stable")[:5]
    labels = eval_set.labels
    return Accuracy(float((labels == ranked[0]).mean()), float(np.isin(labels, ranked).mean()), len(labels))


def mask_logits(model: Any, head: Any, ids: torch.Tensor, attention: torch.Tensor, mask_id: int) -> torch.Tensor:
    """Vocab logits at the [MASK] positions, row-major (as the served graph computes them)."""
    hidden = model.base_model(input_ids=ids, attention_mask=attention).last_hidden_state
    return head(hidden[ids == mask_id]).float()


def top5_predictions(model: Any, head: Any, eval_set: EvalSet, vocabulary: Vocabulary, device: torch.device, budget: int) -> np.ndarray:
    was_training = model.training
    model.eval()
    lengths = np.array([len(s) for s in eval_set.sequences])
    top5 = np.zeros((len(lengths), 5), dtype=np.int64)
    with torch.no_grad():
        for indices in group_by_length(lengths, budget, np.random.default_rng(0)):
            ids, attention = pad([eval_set.sequences[i] for i in indices], vocabulary.pad_id)
            logits = mask_logits(model, head, ids.to(device), attention.to(device), vocabulary.mask_id)
            top5[indices] = logits.topk(5, dim=-1).indices.cpu().numpy()
    model.train(was_training)
    return top5


def accuracy(top5: np.ndarray, eval_set: EvalSet, teacher_top5: np.ndarray | None = None) -> Accuracy:
    labels = eval_set.labels
    agreement = None if teacher_top5 is None else float((top5[:, 0] == teacher_top5[:, 0]).mean())
    return Accuracy(float((top5[:, 0] == labels).mean()), float((top5 == labels[:, None]).any(axis=1).mean()), len(labels), agreement)
