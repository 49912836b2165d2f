"""Masking and masked-token accuracy (numpy only, shared by training and tests), two protocols:

- the field's (BERT's): 15% of the non-special positions of each sequence are selected (at least
  one); of those 80% become [MASK], 10% a random token, 10% stay. Scored at the [MASK] positions,
  so punctuation and word pieces count as targets;
- the reader's (`mask_one_word_per_sentence`): one sentence per input, one whole alphabetic word
  that is a single word piece replaced by [MASK], as someone trying fill-mask would.
Accuracy is top-1 / top-5 over the [MASK] positions. Masking depends only on (sequences, seed),
never on batching, so a figure can be recomputed exactly.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

CLS_ID, SEP_ID, PAD_ID, MASK_ID = 101, 102, 0, 103
FIRST_WORD_ID = 999  # ids below are [PAD], [unusedN], [UNK], [CLS], [SEP], [MASK]
VOCAB_SIZE = 30522
MAX_LENGTH = 128
MASK_RATE = 0.15
KIND_MASK, KIND_RANDOM, KIND_KEEP = 0, 1, 2


@dataclass(frozen=True)
class MaskedSequence:
    input_ids: np.ndarray  # int64 [length], with [CLS] ... [SEP]
    positions: np.ndarray  # int64 [selected], sorted
    labels: np.ndarray  # int64 [selected], the original tokens
    kinds: np.ndarray  # int8 [selected], KIND_*


def load_tokenizer(directory: Path | None = None):
    """The bert-base-uncased WordPiece tokenizer (from the MiniLM package), no padding or truncation."""
    from tokenizers import Tokenizer

    if directory is None:
        from model_export.default_model.build import minilm_dir

        directory = minilm_dir()
    tokenizer = Tokenizer.from_file(str(Path(directory) / "tokenizer.json"))
    tokenizer.no_padding()
    tokenizer.no_truncation()
    return tokenizer


def encode_paragraphs(tokenizer, paragraphs: Sequence[str], max_length: int = MAX_LENGTH) -> list[np.ndarray]:
    """[CLS] piece [SEP] sequences; a long paragraph becomes several pieces of <= max_length tokens."""
    body = max_length - 2
    sequences = []
    for encoding in tokenizer.encode_batch(list(paragraphs), add_special_tokens=False):
        ids = encoding.ids
        if MASK_ID in ids:
            continue
        for start in range(0, len(ids), body):
            piece = ids[start : start + body]
            if len(piece) >= 4:
                sequences.append(np.array([CLS_ID, *piece, SEP_ID], dtype=np.int64))
    return sequences


def mask_sequences(sequences: Sequence[np.ndarray], seed: int) -> list[MaskedSequence]:
    rng = np.random.default_rng(seed)
    out = []
    for ids in sequences:
        candidates = np.arange(1, len(ids) - 1)
        count = max(1, int(round(MASK_RATE * len(candidates))))
        positions = np.sort(rng.choice(candidates, size=count, replace=False))
        draw = rng.random(count)
        kinds = np.where(draw < 0.8, KIND_MASK, np.where(draw < 0.9, KIND_RANDOM, KIND_KEEP)).astype(np.int8)
        random_tokens = rng.integers(FIRST_WORD_ID, VOCAB_SIZE, size=count)
        masked = ids.copy()
        masked[positions[kinds == KIND_MASK]] = MASK_ID
        masked[positions[kinds == KIND_RANDOM]] = random_tokens[kinds == KIND_RANDOM]
        out.append(MaskedSequence(masked, positions, ids[positions], kinds))
    return out


def batches(masked: Sequence[MaskedSequence], max_tokens: int = 4096) -> list[list[int]]:
    """Indices grouped by similar length (little padding), each batch <= max_tokens padded tokens."""
    order = sorted(range(len(masked)), key=lambda i: (len(masked[i].input_ids), i))
    groups, current, longest = [], [], 0
    for index in order:
        length = len(masked[index].input_ids)
        if current and max(longest, length) * (len(current) + 1) > max_tokens:
            groups.append(current)
            current, longest = [], 0
        current.append(index)
        longest = max(longest, length)
    if current:
        groups.append(current)
    return groups


def pad(masked: Sequence[MaskedSequence], indices: Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
    longest = max(len(masked[i].input_ids) for i in indices)
    ids = np.full((len(indices), longest), PAD_ID, dtype=np.int64)
    attention = np.zeros((len(indices), longest), dtype=np.int64)
    for row, index in enumerate(indices):
        length = len(masked[index].input_ids)
        ids[row, :length] = masked[index].input_ids
        attention[row, :length] = 1
    return ids, attention


@dataclass(frozen=True)
class Accuracy:
    top1: float
    top5: float
    positions: int


def masked_accuracy(
    predict_mask_logits: Callable[[np.ndarray, np.ndarray], np.ndarray],
    masked: Sequence[MaskedSequence],
    max_tokens: int = 4096,
) -> Accuracy:
    """Top-1/top-5 over [MASK] positions. `predict_mask_logits(input_ids, attention_mask)` returns
    vocab logits for each position where input_ids == [MASK], in row-major order (the exported
    graph's mask_logits)."""
    hits1 = hits5 = total = 0
    for indices in batches(masked, max_tokens):
        ids, attention = pad(masked, indices)
        logits = np.asarray(predict_mask_logits(ids, attention))
        labels = np.concatenate(
            [masked[i].labels[masked[i].kinds == KIND_MASK] for i in indices]
        )
        if logits.shape[0] != labels.shape[0]:
            raise ValueError(f"{logits.shape[0]} logit rows for {labels.shape[0]} [MASK] positions")
        top5 = np.argpartition(-logits, 5, axis=1)[:, :5]
        top1 = logits.argmax(axis=1)
        hits1 += int((top1 == labels).sum())
        hits5 += int((top5 == labels[:, None]).any(axis=1).sum())
        total += labels.shape[0]
    return Accuracy(hits1 / total, hits5 / total, total)


def frequency_baseline(masked_train: Sequence[MaskedSequence], masked_eval: Sequence[MaskedSequence]) -> Accuracy:
    """Always predict the most frequent training tokens (the field's most-frequent-words baseline)."""
    counts = np.bincount(np.concatenate([m.labels for m in masked_train]), minlength=VOCAB_SIZE)
    return baseline_from_counts(counts, masked_eval)


def baseline_from_counts(counts: np.ndarray, masked_eval: Sequence[MaskedSequence]) -> Accuracy:
    ranked = np.argsort(-counts, kind="stable")[:5]
    labels = np.concatenate([m.labels[m.kinds == KIND_MASK] for m in masked_eval])
    return Accuracy(float((labels == ranked[0]).mean()), float(np.isin(labels, ranked).mean()), int(labels.shape[0]))


# The reader's protocol: what someone trying fill-mask expects. Each held-out sentence is one input
# with one whole word masked: alphabetic, a single word piece (so one [MASK] stands for the whole
# word). Punctuation and word fragments are never targets, unlike the field's protocol above.
_SENTENCE_END = re.compile(r"(?<=[.!?])[\"')\]]*\s+(?=[\"'(\[]?[A-Z])")
MIN_SENTENCE_WORDS = 4


_ABBREVIATION = re.compile(r"(?:^|\s)(?:Mr|Mrs|Ms|Dr|St|Col|Capt|Rev|Sir|vs|etc|e\.g|i\.e|cf|No)\.$", re.IGNORECASE)


def split_sentences(paragraph: str) -> list[str]:
    """Sentences of a prose paragraph (a punctuation rule that knows titles like "Mr."; good enough
    for evaluation), keeping those of at least MIN_SENTENCE_WORDS words."""
    sentences: list[str] = []
    for piece in _SENTENCE_END.split(paragraph):
        if sentences and _ABBREVIATION.search(sentences[-1]):
            sentences[-1] = f"{sentences[-1]} {piece}"
        else:
            sentences.append(piece)
    return [s.strip() for s in sentences if len(s.split()) >= MIN_SENTENCE_WORDS]


def whole_word_ids(tokenizer) -> np.ndarray:
    """Boolean mask over the vocabulary: ids that are a whole alphabetic word on their own."""
    eligible = np.zeros(VOCAB_SIZE, dtype=bool)
    for token, index in tokenizer.get_vocab().items():
        if index >= FIRST_WORD_ID and token.isascii() and token.isalpha():
            eligible[index] = True
    return eligible


def _whole_word_positions(ids: np.ndarray, eligible: np.ndarray, continuation: np.ndarray) -> np.ndarray:
    """Positions (between [CLS] and [SEP]) of single-piece words: eligible, and the next piece is no '##' part."""
    inner = np.arange(1, len(ids) - 1)
    return inner[eligible[ids[inner]] & ~continuation[ids[inner + 1]]]


def continuation_ids(tokenizer) -> np.ndarray:
    flags = np.zeros(VOCAB_SIZE, dtype=bool)
    for token, index in tokenizer.get_vocab().items():
        flags[index] = token.startswith("##")
    return flags


def mask_one_word_per_sentence(tokenizer, paragraphs: Sequence[str], seed: int) -> list[MaskedSequence]:
    """[CLS] sentence [SEP] with one whole word, drawn with `seed`, replaced by [MASK]."""
    eligible, continuation = whole_word_ids(tokenizer), continuation_ids(tokenizer)
    sentences = [sentence for paragraph in paragraphs for sentence in split_sentences(paragraph)]
    rng = np.random.default_rng(seed)
    out = []
    for encoding in tokenizer.encode_batch(sentences, add_special_tokens=False):
        ids = np.array([CLS_ID, *encoding.ids, SEP_ID], dtype=np.int64)
        if len(ids) > MAX_LENGTH or MASK_ID in ids:
            continue
        candidates = _whole_word_positions(ids, eligible, continuation)
        if len(candidates) == 0:
            continue
        position = candidates[rng.integers(len(candidates))]
        masked = ids.copy()
        masked[position] = MASK_ID
        out.append(MaskedSequence(masked, np.array([position]), ids[[position]], np.array([KIND_MASK], dtype=np.int8)))
    return out


def whole_word_counts(tokenizer, sequences: Sequence[np.ndarray]) -> np.ndarray:
    """How often each whole word occurs in `sequences` (unmasked ids): the reader's baseline ranks these."""
    eligible, continuation = whole_word_ids(tokenizer), continuation_ids(tokenizer)
    counts = np.zeros(VOCAB_SIZE, dtype=np.int64)
    for ids in sequences:
        np.add.at(counts, ids[_whole_word_positions(ids, eligible, continuation)], 1)
    return counts
