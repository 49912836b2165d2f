"""Corpus reading and the held-out split, length-grouped batches under a token budget, the resumable
batch stream, and BERT masking (15%; 80% [MASK], 10% random other token, 10% unchanged)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import torch

from model_export.distill.data import (
    IGNORE, BatchStream, corpus_files, group_by_length, is_heldout, load_corpus, mask_tokens, read_paragraphs,
)
from model_export.errors import EmptyCorpusError


def test_corpus_files_takes_files_and_text_files_under_directories(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "one.txt").write_text("x")
    (tmp_path / "a" / "skip.bin").write_bytes(b"\0")
    (tmp_path / "a" / "sub").mkdir()
    (tmp_path / "a" / "sub" / "two.md").write_text("y")
    (tmp_path / "three").write_text("z")
    assert corpus_files([str(tmp_path / "a"), str(tmp_path / "three")]) == [
        tmp_path / "a" / "one.txt", tmp_path / "a" / "sub" / "two.md", tmp_path / "three"]
    with pytest.raises(EmptyCorpusError, match="no such file"):
        corpus_files([str(tmp_path / "missing")])
    (tmp_path / "empty").mkdir()
    with pytest.raises(EmptyCorpusError, match="no text files"):
        corpus_files([str(tmp_path / "empty")])


def test_paragraphs_are_blank_line_separated_and_reflowed(tmp_path: Path) -> None:
    (tmp_path / "t.txt").write_text("First line\nwraps here.\n\n\nSecond.\n   \nThird\n")
    assert read_paragraphs([tmp_path / "t.txt"]) == ["First line wraps here.", "Second.", "Third"]


def test_the_heldout_split_depends_only_on_the_text() -> None:
    texts = [f"paragraph number {i}" for i in range(2000)]
    held = [t for t in texts if is_heldout(t, 5.0)]
    assert 60 < len(held) < 140
    assert held == [t for t in reversed(texts) if is_heldout(t, 5.0)][::-1]


def test_corpus_sequences_are_framed_and_bounded(corpus_dir: Path, tokenizer, vocabulary) -> None:  # noqa: ANN001
    corpus = load_corpus([str(corpus_dir)], tokenizer, vocabulary, max_length=16, heldout_percent=10)
    assert corpus.files == 2 and corpus.heldout
    assert all(s[0] == vocabulary.cls_id and s[-1] == vocabulary.sep_id and 4 <= len(s) <= 16 for s in corpus.train)


def test_an_empty_corpus_is_refused(tmp_path: Path, tokenizer, vocabulary) -> None:  # noqa: ANN001
    (tmp_path / "blank.txt").write_text("\n\n  \n")
    with pytest.raises(EmptyCorpusError, match="no training text"):
        load_corpus([str(tmp_path)], tokenizer, vocabulary, 128, 5.0)


def test_batches_group_lengths_under_the_budget_and_cover_each_sequence_once() -> None:
    rng = np.random.default_rng(0)
    lengths = rng.integers(5, 120, size=500)
    batches = group_by_length(lengths, 1024, np.random.default_rng(1))
    seen = np.concatenate(batches)
    assert sorted(seen.tolist()) == list(range(500))
    assert all(lengths[b].max() * len(b) <= 1024 for b in batches)
    spread = np.mean([lengths[b].max() - lengths[b].min() for b in batches])
    assert spread < 5, "sequences of similar length share a batch"
    padding = sum(lengths[b].max() * len(b) - lengths[b].sum() for b in batches) / lengths.sum()
    assert padding < 0.05
    again = group_by_length(lengths, 1024, np.random.default_rng(1))
    assert all(np.array_equal(a, b) for a, b in zip(batches, again, strict=True))


def test_the_stream_resumes_at_its_position() -> None:
    sequences = [np.arange(2, 2 + n) for n in np.random.default_rng(0).integers(4, 30, size=60)]
    stream = BatchStream(sequences, 128, 0, seed=3)
    for _ in range(5):
        stream.next()
    position = stream.position
    expected = [stream.next()[0] for _ in range(20)]  # runs into the next epoch
    resumed = BatchStream(sequences, 128, 0, seed=3)
    resumed.seek(**position)
    assert all(torch.equal(a, b) for a, b in zip(expected, [resumed.next()[0] for _ in range(20)], strict=True))
    assert stream.epoch >= 1


def test_masking_follows_bert(vocabulary) -> None:  # noqa: ANN001
    generator = torch.Generator().manual_seed(0)
    lengths = torch.randint(10, 60, (400,), generator=generator)
    ids = torch.full((400, 60), vocabulary.pad_id)
    for row, length in enumerate(lengths.tolist()):
        ids[row, 0], ids[row, length - 1] = vocabulary.cls_id, vocabulary.sep_id
        ids[row, 1 : length - 1] = torch.randint(2000, 9000, (length - 2,), generator=generator)
    attention = (ids != vocabulary.pad_id).long()
    inputs, labels = mask_tokens(ids, attention, vocabulary, 0.15, generator)

    selected = labels != IGNORE
    expected_counts = ((lengths - 2).float() * 0.15).round().clamp(min=1)
    assert torch.equal(selected.sum(dim=1).float(), expected_counts)
    assert not selected[~attention.bool()].any()
    assert not (selected & ((ids == vocabulary.cls_id) | (ids == vocabulary.sep_id))).any()
    assert torch.equal(labels[selected], ids[selected])
    assert torch.equal(inputs[~selected], ids[~selected])
    chosen = inputs[selected]
    masked = chosen == vocabulary.mask_id
    kept = chosen == ids[selected]
    randomised = ~masked & ~kept
    total = selected.sum().item()
    assert masked.sum().item() / total == pytest.approx(0.8, abs=0.03)
    assert kept.sum().item() / total == pytest.approx(0.1, abs=0.02)
    assert randomised.sum().item() / total == pytest.approx(0.1, abs=0.02)
    assert np.isin(chosen[randomised].numpy(), vocabulary.replacement_ids).all()


def test_a_random_replacement_is_never_the_original_token(vocabulary) -> None:  # noqa: ANN001
    """With two replacement tokens, a random replacement of one must be the other."""
    two = dataclasses.replace(vocabulary, replacement_ids=np.array([2000, 2001]))
    generator = torch.Generator().manual_seed(1)
    body = torch.tensor([2000, 2001]).repeat(3000, 1)
    ids = torch.cat([torch.full((3000, 1), two.cls_id), body, torch.full((3000, 1), two.sep_id)], dim=1)
    inputs, labels = mask_tokens(ids, torch.ones_like(ids), two, 0.5, generator)
    selected = labels != IGNORE
    kept = selected & (inputs == ids)
    swapped = selected & (inputs == 4001 - ids)
    assert swapped.sum() > 200
    assert kept.sum().item() / selected.sum().item() == pytest.approx(0.1, abs=0.02), "no random draw lands on the original"
