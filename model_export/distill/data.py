"""Corpus -> token sequences -> length-grouped batches -> BERT masking.

Paragraphs (blank-line separated; lines within one are joined) are split into training and
held-out by a hash of their text, so the split does not depend on file order. Each paragraph is
tokenized once and cut into [CLS] piece [SEP] sequences of at most max_length tokens. An epoch's
batches group sequences of similar length under a padded-token budget and come in a seeded
random order; (epoch, index) is the stream's position, which a checkpoint saves. Masking is drawn
per batch from its own generator, so it too resumes exactly.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from model_export.distill.teacher import Vocabulary
from model_export.errors import EmptyCorpusError

TEXT_SUFFIXES = (".txt", ".text", ".md")
MIN_SEQUENCE_TOKENS = 4  # [CLS] + two tokens + [SEP]
IGNORE = -100


def corpus_files(paths: Sequence[str]) -> list[Path]:
    """The files named, and the text files (*.txt, *.text, *.md) under the directories named."""
    files: list[Path] = []
    for name in paths:
        path = Path(name).expanduser()
        if path.is_file():
            files.append(path)
        elif path.is_dir():
            files.extend(sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in TEXT_SUFFIXES))
        else:
            raise EmptyCorpusError(f"{name}: no such file or directory")
    if not files:
        raise EmptyCorpusError(f"no text files ({', '.join(TEXT_SUFFIXES)}) in {', '.join(paths)}")
    return files


def read_paragraphs(files: Iterable[Path]) -> list[str]:
    paragraphs = []
    for path in files:
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as error:
            raise EmptyCorpusError(f"{path}: cannot read it as UTF-8 text: {error}") from None
        block: list[str] = []
        for line in [*text.splitlines(), ""]:
            if line.strip():
                block.append(line.strip())
            elif block:
                paragraphs.append(" ".join(block))
                block = []
    return paragraphs


def is_heldout(paragraph: str, percent: float) -> bool:
    digest = int(hashlib.sha256(paragraph.encode()).hexdigest()[:8], 16)
    return digest % 10_000 < percent * 100


@dataclass(frozen=True)
class Corpus:
    train: list[np.ndarray]  # int64 token sequences with [CLS] ... [SEP]
    heldout: list[str]  # paragraphs
    files: int


def load_corpus(paths: Sequence[str], tokenizer: Any, vocabulary: Vocabulary, max_length: int, heldout_percent: float) -> Corpus:
    from model_export.distill.pack import is_packed, load_packed

    if is_packed(tuple(paths)):  # tokenized once elsewhere (pack.py)
        return load_packed(Path(paths[0]), tokenizer, vocabulary, max_length, heldout_percent)
    files = corpus_files(paths)
    paragraphs = read_paragraphs(files)
    heldout = [p for p in paragraphs if is_heldout(p, heldout_percent)]
    train = encode(tokenizer, [p for p in paragraphs if not is_heldout(p, heldout_percent)], vocabulary, max_length)
    if not train:
        raise EmptyCorpusError(f"{', '.join(paths)}: no training text ({len(paragraphs)} paragraphs in {len(files)} files)")
    if not heldout:
        raise EmptyCorpusError(
            f"{', '.join(paths)}: none of its {len(paragraphs)} paragraphs is held out at --heldout-percent {heldout_percent}; "
            "add text or raise it"
        )
    return Corpus(train, heldout, len(files))


def encode(tokenizer: Any, paragraphs: Sequence[str], vocabulary: Vocabulary, max_length: int) -> list[np.ndarray]:
    """[CLS] piece [SEP] sequences; a long paragraph becomes several pieces."""
    body = max_length - 2
    sequences: list[np.ndarray] = []
    if not paragraphs:
        return sequences
    for ids in tokenizer(list(paragraphs), add_special_tokens=False)["input_ids"]:
        for start in range(0, len(ids), body):
            piece = ids[start : start + body]
            if len(piece) + 2 >= MIN_SEQUENCE_TOKENS:
                sequences.append(np.array([vocabulary.cls_id, *piece, vocabulary.sep_id], dtype=np.int64))
    return sequences


def group_by_length(lengths: np.ndarray, budget: int, rng: np.random.Generator) -> list[np.ndarray]:
    """Indices in batches of similar length, each <= budget padded tokens, in a random order."""
    order = np.lexsort((rng.random(len(lengths)), lengths))
    batches, start = [], 0
    while start < len(order):
        end = start + 1
        while end < len(order) and lengths[order[end]] * (end + 1 - start) <= budget:
            end += 1
        batches.append(order[start:end])
        start = end
    return [batches[i] for i in rng.permutation(len(batches))]


def pad(sequences: Sequence[np.ndarray], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    longest = max(len(s) for s in sequences)
    ids = np.full((len(sequences), longest), pad_id, dtype=np.int64)
    attention = np.zeros((len(sequences), longest), dtype=np.int64)
    for row, sequence in enumerate(sequences):
        ids[row, : len(sequence)] = sequence
        attention[row, : len(sequence)] = 1
    return torch.from_numpy(ids), torch.from_numpy(attention)


class BatchStream:
    """Endless padded batches of the training sequences, epoch after epoch; `position` resumes it."""

    def __init__(self, sequences: list[np.ndarray], budget: int, pad_id: int, seed: int) -> None:
        self.sequences = sequences
        self.lengths = np.array([len(s) for s in sequences])
        self.budget, self.pad_id, self.seed = budget, pad_id, seed
        self.epoch, self.index = 0, 0
        self._batches = self._epoch_batches(0)

    def _epoch_batches(self, epoch: int) -> list[np.ndarray]:
        return group_by_length(self.lengths, self.budget, np.random.default_rng([self.seed, epoch]))

    @property
    def position(self) -> dict[str, int]:
        return {"epoch": self.epoch, "index": self.index}

    def seek(self, epoch: int, index: int) -> None:
        self.epoch, self.index = epoch, index
        self._batches = self._epoch_batches(epoch)

    def next(self) -> tuple[torch.Tensor, torch.Tensor]:
        if self.index >= len(self._batches):
            self.seek(self.epoch + 1, 0)
        indices = self._batches[self.index]
        self.index += 1
        return pad([self.sequences[i] for i in indices], self.pad_id)


def mask_tokens(
    ids: torch.Tensor, attention: torch.Tensor, vocabulary: Vocabulary, rate: float, generator: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """BERT masking: round(rate * n) of each row's n non-special tokens (at least one) are selected;
    80% become [MASK], 10% a random other token, 10% stay. Returns (inputs, labels) with labels
    IGNORE where nothing was selected."""
    candidates = attention.bool() & (ids != vocabulary.cls_id) & (ids != vocabulary.sep_id)
    counts = (candidates.sum(dim=1).float() * rate).round().clamp(min=1).long()
    scores = torch.rand(ids.shape, generator=generator).masked_fill(~candidates, 2.0)
    ranks = scores.argsort(dim=1).argsort(dim=1)
    selected = (ranks < counts[:, None]) & candidates
    draw = torch.rand(ids.shape, generator=generator)
    replacements = torch.from_numpy(vocabulary.replacement_ids)
    pick = torch.randint(0, len(replacements) - 1, ids.shape, generator=generator)
    # Skip over the original token so a "random" replacement always differs from it.
    pick += (pick >= torch.searchsorted(replacements, ids)).long()
    inputs = ids.clone()
    inputs[selected & (draw < 0.8)] = vocabulary.mask_id
    randomised = selected & (draw >= 0.8) & (draw < 0.9)
    inputs[randomised] = replacements[pick[randomised]]
    labels = torch.where(selected, ids, torch.full_like(ids, IGNORE))
    return inputs, labels
