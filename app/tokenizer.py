"""Validation and tokenization: a bad input fails here, alone, before it reaches the queue.

The wrapper owns the length limit, truncation (TEI's `truncate` / `truncation_direction`), the mask
check for fill-mask, pre-tokenized ids (OpenAI clients may send them), and tokenize/decode for
/tokenize and /decode.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, NoReturn

import numpy as np
from tokenizers import Encoding, Tokenizer

from model_export.manifest import SpecialTokens

from app.classification import TokenSpans, WordRules
from app.errors import EmptyInput, InvalidInput, TokenizerError

Direction = Literal["right", "left"]
# A sentence pair for a cross-encoder or NLI classifier: [CLS] text [SEP] text_pair [SEP].
Pair = tuple[str, str]


@dataclass(frozen=True)
class Token:
    id: int
    text: str
    special: bool
    start: int | None
    stop: int | None


# transformers' `clean_up_tokenization`, applied when the checkpoint asked for it, so `sequence` and
# `token_str` match the fill-mask pipeline for such checkpoints too.
_CLEAN_UP_SPACES = (
    (" .", "."), (" ?", "?"), (" !", "!"), (" ,", ","), (" ' ", "'"),
    (" n't", "n't"), (" 'm", "'m"), (" 's", "'s"), (" 've", "'ve"), (" 're", "'re"),
)


def is_blank(text: str) -> bool:
    """Empty or only whitespace: nothing to embed or fill. TEI answers an empty input 400 `empty`; a blank
    one gets the same answer (tokenized, it is [CLS] [SEP] alone, whose embedding means nothing)."""
    return not text or text.isspace()


def check_text(text: str, label: str) -> None:
    """Refuse text the tokenizer cannot take: JSON's \\ud800-style escapes can carry lone UTF-16
    surrogates, which Python keeps in `str` but which are not Unicode scalar values."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as error:
        raise TokenizerError(
            f"{label} contains a lone surrogate (U+{ord(text[error.start]):04X}) at character {error.start}; "
            "send valid Unicode"
        ) from None


def check_inputs(inputs: Sequence[str | Pair]) -> None:
    """Something to tokenize in every input (each text of a pair too), all of it valid Unicode."""
    if not inputs:
        raise EmptyInput("`inputs` cannot be empty")
    for index, item in enumerate(inputs):
        parts = [item] if isinstance(item, str) else list(item)
        for part, text in enumerate(parts):
            label = f"input {index}" if len(parts) == 1 else f"input {index} ({'text' if part == 0 else 'text_pair'})"
            if is_blank(text):
                raise EmptyInput(f"{label} is {'only whitespace' if text else 'an empty string'}")
            check_text(text, label)


class TextTokenizer:
    def __init__(self, path: Path, special: SpecialTokens, max_length: int, clean_up_spaces: bool = False) -> None:
        self._tokenizer = Tokenizer.from_file(str(path))
        # The exporter writes padding and truncation disabled; make sure, since both would corrupt lengths.
        self._tokenizer.no_padding()
        self._tokenizer.no_truncation()
        self.special = special
        self.max_length = max_length
        self.clean_up_spaces = clean_up_spaces
        self.vocab_size = self._tokenizer.get_vocab_size(with_added_tokens=True)
        # Copies with truncation on (longest_first, as transformers and TEI cut pairs), one per direction,
        # built when first needed: the shared one stays untruncated, and a copy is safe across threads.
        self._truncating: dict[Direction, Tokenizer] = {}
        self._truncating_lock = threading.Lock()

    @property
    def mask_token(self) -> str | None:
        return self.special.mask.token if self.special.mask else None

    @property
    def mask_id(self) -> int | None:
        return self.special.mask.id if self.special.mask else None

    def encode(
        self,
        texts: Sequence[str],
        *,
        truncate: bool = False,
        direction: Direction = "right",
        require_mask: bool = False,
    ) -> list[np.ndarray]:
        """Token ids with [CLS]/[SEP], one int64 array per text; raises a ServiceError for a bad input."""
        check_inputs(texts)
        if require_mask and self.mask_id is None:
            raise InvalidInput("this model has no mask token, so it cannot serve fill-mask")
        try:
            encodings = self._tokenizer.encode_batch(list(texts), add_special_tokens=True)
        except Exception as error:  # the tokenizers library raises plain Exceptions
            raise TokenizerError(f"could not tokenize the input: {error}") from None
        out = [
            self._fit(np.asarray(encoding.ids, dtype=np.int64), index, truncate, direction)
            for index, encoding in enumerate(encodings)
        ]
        if require_mask:
            for index, ids in enumerate(out):
                if not (ids == self.mask_id).any():
                    raise InvalidInput(
                        f"input {index} has no mask token; fill-mask needs at least one {self.mask_token}"
                    )
        return out

    def encode_pairs(
        self, inputs: Sequence[str | Pair], *, truncate: bool = False, direction: Direction = "right"
    ) -> list[tuple[np.ndarray, np.ndarray]]:
        """(token ids, token type ids) per input, a text or a pair; a pair too long is cut longest text
        first, as transformers' `truncation=True` and TEI cut it."""
        check_inputs(inputs)
        encodings = self._encode_batch(self._tokenizer, inputs)
        out = []
        for index, encoding in enumerate(encodings):
            if len(encoding.ids) > self.max_length:
                if not truncate:
                    self._refuse_length(index, len(encoding.ids))
                encoding = self._encode_batch(self._truncated(direction), [inputs[index]])[0]
            out.append((np.asarray(encoding.ids, dtype=np.int64), np.asarray(encoding.type_ids, dtype=np.int64)))
        return out

    def encode_spans(self, texts: Sequence[str]) -> list[TokenSpans]:
        """Tokens with their character offsets, for token classification. Like the pipeline, a text
        over the max length is cut at its end (the pipeline's default truncation)."""
        check_inputs(texts)
        encodings = self._encode_batch(self._truncated("right"), texts)
        return [
            TokenSpans(
                text,
                np.asarray(encoding.ids, dtype=np.int64),
                list(encoding.tokens),
                [tuple(offset) for offset in encoding.offsets],
                [bool(special) for special in encoding.special_tokens_mask],
            )
            for text, encoding in zip(texts, encodings, strict=True)
        ]

    def word_rules(self) -> WordRules:
        """What the token-classification pipeline reads from its tokenizer to build words."""
        decoder = self._tokenizer.decoder
        prefix = getattr(self._tokenizer.model, "continuing_subword_prefix", None)
        return WordRules(
            unk_id=self.special.unk.id if self.special.unk else None,
            word_aware=bool(prefix),
            tokens_to_string=decoder.decode if decoder is not None else " ".join,
        )

    def _truncated(self, direction: Direction) -> Tokenizer:
        with self._truncating_lock:
            if direction not in self._truncating:
                copy = Tokenizer.from_str(self._tokenizer.to_str())
                copy.enable_truncation(self.max_length, strategy="longest_first", direction=direction)
                self._truncating[direction] = copy
            return self._truncating[direction]

    @staticmethod
    def _encode_batch(tokenizer: Tokenizer, inputs: Sequence[str | Pair]) -> list[Encoding]:
        try:
            return tokenizer.encode_batch(list(inputs), add_special_tokens=True)
        except Exception as error:  # the tokenizers library raises plain Exceptions
            raise TokenizerError(f"could not tokenize the input: {error}") from None

    def _refuse_length(self, index: int, length: int) -> NoReturn:
        raise InvalidInput(
            f"input {index} has {length} tokens but this server accepts at most {self.max_length} "
            "(set truncate to true to cut it)"
        )

    def encode_ids(
        self, sequences: Sequence[Sequence[int]], *, truncate: bool = False, direction: Direction = "right"
    ) -> list[np.ndarray]:
        """Pre-tokenized input: ids are checked against the vocabulary and wrapped in [CLS] ... [SEP]
        unless already wrapped, so they pool exactly like the same text would."""
        if not sequences:
            raise EmptyInput("`inputs` cannot be empty")
        cls_id, sep_id = self.special.cls.id, self.special.sep.id
        out = []
        for index, sequence in enumerate(sequences):
            if len(sequence) == 0:
                raise EmptyInput(f"input {index} is an empty list of token ids")
            self.check_ids(sequence, f"input {index}")
            ids = np.asarray(sequence, dtype=np.int64)
            if not (ids[0] == cls_id and ids[-1] == sep_id and len(ids) >= 2):
                ids = np.concatenate([[cls_id], ids, [sep_id]]).astype(np.int64)
            out.append(self._fit(ids, index, truncate, direction))
        return out

    def check_ids(self, ids: Sequence[int], label: str) -> None:
        """Token ids must index the vocabulary; checked on Python ints, which JSON allows of any size."""
        if any(not 0 <= token < self.vocab_size for token in ids):
            raise InvalidInput(f"{label} has token ids outside the vocabulary [0, {self.vocab_size})")

    def tokenize(self, text: str, add_special_tokens: bool = True, label: str = "input") -> list[Token]:
        check_text(text, label)
        encoding = self._tokenizer.encode(text, add_special_tokens=add_special_tokens)
        tokens = []
        for token_id, piece, (start, stop), special in zip(
            encoding.ids, encoding.tokens, encoding.offsets, encoding.special_tokens_mask, strict=True
        ):
            tokens.append(Token(token_id, piece, bool(special), None if special else start, None if special else stop))
        return tokens

    def tokenize_all(self, texts: Sequence[str], add_special_tokens: bool = True) -> list[list[Token]]:
        """TEI's /tokenize: each input within the same length limit as inference."""
        out = []
        for index, text in enumerate(texts):
            tokens = self.tokenize(text, add_special_tokens, label=f"input {index}")
            if len(tokens) > self.max_length:
                raise InvalidInput(
                    f"input {index} has {len(tokens)} tokens but this server accepts at most {self.max_length}"
                )
            out.append(tokens)
        return out

    def decode_all(self, sequences: Sequence[Sequence[int]], skip_special_tokens: bool = True) -> list[str]:
        for index, ids in enumerate(sequences):
            self.check_ids(ids, f"ids {index}")
        return [self.decode(ids, skip_special_tokens) for ids in sequences]

    def decode(self, ids: Sequence[int], skip_special_tokens: bool = True) -> str:
        text = self._tokenizer.decode(list(ids), skip_special_tokens=skip_special_tokens)
        if self.clean_up_spaces:
            for spaced, joined in _CLEAN_UP_SPACES:
                text = text.replace(spaced, joined)
        return text

    def token_to_id(self, token: str) -> int | None:
        check_text(token, "target")
        return self._tokenizer.token_to_id(token)

    def first_piece(self, text: str) -> int | None:
        """The first word piece of `text` without special tokens (fill-mask targets outside the vocab)."""
        check_text(text, "target")
        ids = self._tokenizer.encode(text, add_special_tokens=False).ids
        return ids[0] if ids else None

    def _fit(self, ids: np.ndarray, index: int, truncate: bool, direction: Direction) -> np.ndarray:
        if len(ids) <= self.max_length:
            return ids
        if not truncate:
            self._refuse_length(index, len(ids))
        # Keep [CLS] and [SEP]; cut the body from the chosen side (TEI's truncation_direction).
        body = ids[1:-1]
        keep = self.max_length - 2
        body = body[:keep] if direction == "right" else body[len(body) - keep :]
        return np.concatenate([ids[:1], body, ids[-1:]])
