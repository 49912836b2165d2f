"""Load the teacher (a BERT or DistilBERT masked-LM, local or from the hub) and check its tokenizer."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import numpy as np

from model_export.errors import NotMaskedLMError, TokenizerMismatchError
from model_export.loading import LoadedCheckpoint, load_checkpoint, resolve_source, weights_sha256

# Vocabulary entries written like [PAD], [unused12]: never a random replacement, never a word to predict.
_BRACKETED = re.compile(r"^\[.*\]$")


@dataclass(frozen=True)
class Vocabulary:
    """The tokenizer's ids the training and evaluation need, checked against the model."""

    cls_id: int
    sep_id: int
    pad_id: int
    mask_id: int
    size: int  # the model's vocabulary size (rows of the embedding matrix)
    replacement_ids: np.ndarray  # sorted ids a masked token may be replaced by (no specials, no [unusedN])
    word_ids: np.ndarray  # bool [size]: a whole alphabetic word on its own (not ##piece, not special)
    continuation_ids: np.ndarray  # bool [size]: a ##piece that continues the previous word


@dataclass(frozen=True)
class Teacher:
    checkpoint: LoadedCheckpoint
    vocabulary: Vocabulary
    weights_sha256: str

    @property
    def model(self) -> Any:
        return self.checkpoint.model

    @property
    def tokenizer(self) -> Any:
        return self.checkpoint.tokenizer

    @property
    def num_layers(self) -> int:
        return int(self.checkpoint.config.num_hidden_layers)


def load_teacher(source: str, need_mlm_head: bool = True) -> Teacher:
    """The teacher in eval mode, without gradients, with sdpa attention (the exporter loads eager).
    Teacher-free runs may start from a plain encoder (BertModel, DistilBertModel): the student then
    gets a new masked-LM head (student.init_student)."""
    resolved = resolve_source(source)
    checkpoint = load_checkpoint(resolved)
    if need_mlm_head and not checkpoint.has_mlm_head:
        raise NotMaskedLMError(
            f"{source}: a {checkpoint.architecture}, not a masked-LM; the teacher must be a BertForMaskedLM "
            "or DistilBertForMaskedLM (its config.json architectures say which), or pass --teacher-free to train "
            "this encoder with a new masked-LM head"
        )
    model = checkpoint.model
    model.set_attn_implementation("sdpa")
    model.requires_grad_(False)
    vocabulary = check_vocabulary(checkpoint.tokenizer, int(checkpoint.config.vocab_size), source)
    return Teacher(checkpoint, vocabulary, weights_sha256(resolved))


def check_vocabulary(tokenizer: Any, model_vocab_size: int, source: str) -> Vocabulary:
    ids = {name: getattr(tokenizer, f"{name}_token_id", None) for name in ("cls", "sep", "pad", "mask")}
    missing = [f"[{name.upper()}]" for name, value in ids.items() if value is None]
    if missing:
        raise TokenizerMismatchError(f"{source}: the tokenizer has no {', '.join(missing)} token")
    if len(tokenizer) > model_vocab_size:
        raise TokenizerMismatchError(
            f"{source}: the tokenizer has {len(tokenizer)} tokens but the model's vocabulary has {model_vocab_size} rows"
        )
    special = set(tokenizer.all_special_ids)
    tokens = tokenizer.convert_ids_to_tokens(list(range(len(tokenizer))))
    plain = [i for i, token in enumerate(tokens) if i not in special and not _BRACKETED.match(token)]
    word_ids = np.zeros(model_vocab_size, dtype=bool)
    continuation_ids = np.zeros(model_vocab_size, dtype=bool)
    for i in plain:
        token = tokens[i]
        continuation_ids[i] = token.startswith("##")
        word_ids[i] = token.isascii() and token.isalpha()
    if not word_ids.any():
        raise TokenizerMismatchError(f"{source}: the tokenizer has no whole-word tokens to evaluate on")
    return Vocabulary(
        cls_id=ids["cls"], sep_id=ids["sep"], pad_id=ids["pad"], mask_id=ids["mask"], size=model_vocab_size,
        replacement_ids=np.array(plain, dtype=np.int64), word_ids=word_ids, continuation_ids=continuation_ids,
    )
