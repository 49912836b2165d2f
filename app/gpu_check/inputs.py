"""Inputs of known length: token batches for the raw session, texts for HTTP, and real mixed lengths.

Fixed-length texts are random whole-word vocabulary entries, each of which WordPiece keeps as one token,
so a text of n - 2 words is exactly n tokens with [CLS] and [SEP]; the fill-mask model's texts carry one
[MASK] in the middle.
"""

from __future__ import annotations

import json
import random
import re
from pathlib import Path

import numpy as np
from tokenizers import Tokenizer

from app.backend import TokenBatch, TokenItem, Wants

_WHOLE_WORD = re.compile(r"[a-z]{3,10}")
FIRST_ORDINARY_ID = 1000  # bert-base-uncased's ids below this are special, unused, or single characters


def wants_for(task: str) -> Wants:
    return Wants(embedding=True, mask_top_k=5 if task == "fill-mask" else None)


def token_batch(batch: int, length: int, cls_id: int, sep_id: int, mask_id: int | None, vocab_size: int, seed: int = 0) -> TokenBatch:
    """`batch` random sequences of exactly `length` tokens, one mask each when `mask_id` is given."""
    rng = np.random.default_rng(seed)
    ids = rng.integers(FIRST_ORDINARY_ID, vocab_size, size=(batch, length), dtype=np.int64)
    ids[:, 0], ids[:, -1] = cls_id, sep_id
    if mask_id is not None:
        ids[:, length // 2] = mask_id
    wants = wants_for("fill-mask" if mask_id is not None else "embed")
    return TokenBatch.of([TokenItem(row, wants) for row in ids])


def exact_length_texts(tokenizer: Tokenizer, length: int, count: int, mask_token: str | None, seed: int = 0) -> list[str]:
    """`count` texts that tokenize to exactly `length` tokens, special tokens included."""
    words = sorted(word for word in tokenizer.get_vocab() if _WHOLE_WORD.fullmatch(word))
    rng = random.Random(seed)
    texts = []
    for _ in range(count):
        chosen = rng.choices(words, k=length - 2)
        if mask_token is not None:
            chosen[len(chosen) // 2] = mask_token
        texts.append(" ".join(chosen))
    lengths = {len(encoding.ids) for encoding in tokenizer.encode_batch(texts)}
    if lengths != {length}:
        raise ValueError(f"texts meant to be {length} tokens tokenize to {sorted(lengths)}")
    return texts


def request_bodies(texts: list[str], task: str, model: str) -> list[bytes]:
    """One JSON body per text, each naming the model (the server serves several)."""
    extra = {"truncate": True} if task == "embed" else {}
    return [json.dumps({"inputs": text, "model": model, **extra}).encode() for text in texts]


def mixed_sentences(task: str, mask_token: str | None, limit: int | None = None) -> list[str]:
    """STS-B test sentences in a fixed shuffled order (arrival order), masked for fill-mask."""
    from app.bench import as_task, load_sentences

    return as_task(load_sentences(limit), task, mask_token or "[MASK]")


def encode_mixed(tokenizer_file: Path, texts: list[str], max_length: int) -> list[np.ndarray]:
    tokenizer = Tokenizer.from_file(str(tokenizer_file))
    tokenizer.no_padding()
    tokenizer.enable_truncation(max_length)
    return [np.asarray(encoding.ids, dtype=np.int64) for encoding in tokenizer.encode_batch(texts)]
