"""Inputs of exactly the lengths the grid names."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from tokenizers import Tokenizer

from app.gpu_check import inputs
from app.gpu_check.models import write_tokenizer


@pytest.fixture(scope="module")
def tokenizer(tmp_path_factory: pytest.TempPathFactory) -> Tokenizer:
    directory = tmp_path_factory.mktemp("tokenizer")
    write_tokenizer(directory, 512)
    return Tokenizer.from_file(str(directory / "tokenizer.json"))


@pytest.mark.parametrize("length", [3, 32, 128, 512])
def test_texts_tokenize_to_exactly_the_length(tokenizer: Tokenizer, length: int) -> None:
    texts = inputs.exact_length_texts(tokenizer, length, 20, None)
    assert {len(encoding.ids) for encoding in tokenizer.encode_batch(texts)} == {length}
    assert len(set(texts)) == 20


def test_fill_mask_texts_carry_one_mask(tokenizer: Tokenizer) -> None:
    texts = inputs.exact_length_texts(tokenizer, 32, 5, "[MASK]")
    assert all(text.count("[MASK]") == 1 for text in texts)
    assert all(encoding.ids.count(103) == 1 and len(encoding.ids) == 32 for encoding in tokenizer.encode_batch(texts))


def test_token_batches_have_the_shape_and_specials() -> None:
    batch = inputs.token_batch(4, 16, cls_id=101, sep_id=102, mask_id=103, vocab_size=30522)
    assert len(batch) == 4 and batch.lengths.tolist() == [16] * 4
    rows = batch.ids.reshape(4, 16)
    assert (rows[:, 0] == 101).all() and (rows[:, -1] == 102).all() and (rows[:, 8] == 103).all()
    body = np.delete(rows[:, 1:-1], 7, axis=1)
    assert body.min() >= inputs.FIRST_ORDINARY_ID and rows.max() < 30522
    assert all(wants.mask_top_k == 5 for wants in batch.wants)
    embed = inputs.token_batch(2, 8, 101, 102, None, 30522)
    assert not np.isin(embed.ids, [103]).any() and all(wants.mask_top_k is None for wants in embed.wants)


def test_bodies_name_the_model() -> None:
    embed, fill = inputs.request_bodies(["a b"], "embed", "m1")[0], inputs.request_bodies(["a [MASK]"], "fill-mask", "m2")[0]
    assert json.loads(embed) == {"inputs": "a b", "model": "m1", "truncate": True}
    assert json.loads(fill) == {"inputs": "a [MASK]", "model": "m2"}


def test_mixed_sentences_are_sts_b_truncated_to_the_model(tmp_path: Path) -> None:
    write_tokenizer(tmp_path, 512)
    texts = inputs.mixed_sentences("fill-mask", "[MASK]", limit=300)
    assert len(texts) == 300 and all("[MASK]" in text for text in texts)
    lengths = [len(ids) for ids in inputs.encode_mixed(tmp_path / "tokenizer.json", texts, 16)]
    assert max(lengths) == 16 and min(lengths) < 12
