"""Validation and tokenization: limits, truncation directions, mask checks, pre-tokenized ids."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from app.errors import EmptyInput, InvalidInput, TokenizerError
from app.tokenizer import TextTokenizer
from model_export.manifest import read_manifest


@pytest.fixture(scope="module")
def tokenizer(fake_model_dir: Path) -> TextTokenizer:
    manifest = read_manifest(fake_model_dir)
    return TextTokenizer(fake_model_dir / manifest.tokenizer_file, manifest.special_tokens, max_length=8)


def test_encode_adds_special_tokens(tokenizer: TextTokenizer) -> None:
    (ids,) = tokenizer.encode(["hello world"])
    assert ids.tolist() == [101, 7592, 2088, 102] and ids.dtype == np.int64


def test_too_long_is_refused_with_limit_and_length(tokenizer: TextTokenizer) -> None:
    with pytest.raises(InvalidInput, match="input 1 has 12 tokens but this server accepts at most 8"):
        tokenizer.encode(["short", "one two three four five six seven eight nine ten"])


def test_truncation_keeps_special_tokens_and_the_chosen_end(tokenizer: TextTokenizer) -> None:
    text = "one two three four five six seven eight nine ten"
    (right,) = tokenizer.encode([text], truncate=True)
    (left,) = tokenizer.encode([text], truncate=True, direction="left")
    assert tokenizer.decode(right.tolist()) == "one two three four five six"
    assert tokenizer.decode(left.tolist()) == "five six seven eight nine ten"
    assert right[0] == left[0] == 101 and right[-1] == left[-1] == 102 and len(right) == len(left) == 8


def test_empty_inputs(tokenizer: TextTokenizer) -> None:
    with pytest.raises(EmptyInput):
        tokenizer.encode([])
    with pytest.raises(EmptyInput, match="input 0"):
        tokenizer.encode([""])


def test_fill_mask_needs_the_real_mask_token(tokenizer: TextTokenizer) -> None:
    assert tokenizer.encode(["a [MASK] b"], require_mask=True)[0].tolist().count(103) == 1
    with pytest.raises(InvalidInput, match=r"\[MASK\]"):
        tokenizer.encode(["a [mask] b"], require_mask=True)  # lowercase is just text


def test_pre_tokenized_ids_are_wrapped_like_text(tokenizer: TextTokenizer) -> None:
    (from_text,) = tokenizer.encode(["hello world"])
    assert tokenizer.encode_ids([[7592, 2088]])[0].tolist() == from_text.tolist()
    assert tokenizer.encode_ids([from_text.tolist()])[0].tolist() == from_text.tolist()  # already wrapped
    with pytest.raises(InvalidInput, match="outside the vocabulary"):
        tokenizer.encode_ids([[7592, 999999]])
    with pytest.raises(EmptyInput):
        tokenizer.encode_ids([[]])


def test_tokenize_and_decode_for_tei_routes(tokenizer: TextTokenizer) -> None:
    tokens = tokenizer.tokenize("Hello world")
    assert [(t.id, t.text, t.special) for t in tokens] == [
        (101, "[CLS]", True), (7592, "hello", False), (2088, "world", False), (102, "[SEP]", True)
    ]
    assert (tokens[1].start, tokens[1].stop) == (0, 5) and tokens[0].start is None
    assert tokenizer.decode([101, 7592, 2088, 102], skip_special_tokens=False) == "[CLS] hello world [SEP]"


@pytest.mark.parametrize("text", ["\ud800", "ok \udfff", "a [MASK] \ud83d"])
def test_lone_surrogates_are_a_tokenizer_error(tokenizer: TextTokenizer, text: str) -> None:
    # JSON's "\ud800" escapes decode to such strings; the tokenizers library refuses them with a TypeError.
    with pytest.raises(TokenizerError, match="input 1 contains a lone surrogate"):
        tokenizer.encode(["fine", text])
    with pytest.raises(TokenizerError, match="input 0 contains a lone surrogate"):
        tokenizer.tokenize(text, label="input 0")
    with pytest.raises(TokenizerError, match="target contains a lone surrogate"):
        tokenizer.token_to_id(text)
    with pytest.raises(TokenizerError, match="target contains a lone surrogate"):
        tokenizer.first_piece(text)


@pytest.mark.parametrize("ids", [[2**63], [5, 2**70], [-(2**70)]])
def test_token_ids_beyond_int64_are_outside_the_vocabulary(tokenizer: TextTokenizer, ids: list[int]) -> None:
    with pytest.raises(InvalidInput, match="input 0 has token ids outside the vocabulary"):
        tokenizer.encode_ids([ids])
