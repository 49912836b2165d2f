"""A corpus tokenized once and packed into one small file, for a machine that gets its inputs in
bounded transfers (a GPU host reached through 64 MiB calls: docs/gpu.md):

    python -m model_export.distill.pack TOKENIZER_DIR CORPUS... --out corpus.npz [--max-length 128] [--heldout-percent 5]

The file holds the training sequences exactly as `load_corpus` would cut them (flat uint16 token
ids and their lengths) and the held-out paragraphs as text (evaluation splits them into sentences),
with the tokenizer's fingerprint, --max-length and --heldout-percent. `python -m model_export.distill`
takes the .npz in place of the text and refuses it when any of the three differs from the run's.
3M tokens take about 6 MB.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np

from model_export.distill.teacher import Vocabulary
from model_export.errors import EmptyCorpusError, ExportError, InvalidOptionError, TokenizerMismatchError

FORMAT = "distilserve-packed-corpus/1"
SUFFIX = ".npz"


def is_packed(paths: list[str] | tuple[str, ...]) -> bool:
    return len(paths) == 1 and paths[0].endswith(SUFFIX)


def tokenizer_fingerprint(tokenizer: Any) -> str:
    """The vocabulary (token -> id) and the normalisation, hashed: what decides the ids."""
    backend = json.loads(tokenizer.backend_tokenizer.to_str())
    described = {"vocab": tokenizer.get_vocab(), "normalizer": backend.get("normalizer"),
                 "pre_tokenizer": backend.get("pre_tokenizer"), "model": (backend.get("model") or {}).get("type")}
    return hashlib.sha256(json.dumps(described, sort_keys=True).encode()).hexdigest()


def write_packed(out: Path, train: list[np.ndarray], heldout: list[str], tokenizer: Any, max_length: int,
                 heldout_percent: float) -> Path:
    tokens = np.concatenate(train)
    if tokens.max() >= 2**16:
        raise InvalidOptionError(f"token id {tokens.max()} does not fit the packed format's uint16")
    text = "\n".join(paragraph.replace("\n", " ") for paragraph in heldout).encode("utf-8")
    meta = {"format": FORMAT, "tokenizer": tokenizer_fingerprint(tokenizer), "max_length": max_length,
            "heldout_percent": heldout_percent, "sequences": len(train), "tokens": int(tokens.size)}
    partial = out.with_name(out.name + ".partial.npz")
    np.savez_compressed(partial, tokens=tokens.astype(np.uint16), lengths=np.array([len(s) for s in train], dtype=np.uint16),
                        heldout=np.frombuffer(text, dtype=np.uint8), meta=np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8))
    partial.replace(out)
    return out


def load_packed(path: Path, tokenizer: Any, vocabulary: Vocabulary, max_length: int, heldout_percent: float) -> Any:
    from model_export.distill.data import Corpus

    try:
        with np.load(path) as packed:
            meta = json.loads(packed["meta"].tobytes())
            tokens, lengths = packed["tokens"].astype(np.int64), packed["lengths"].astype(np.int64)
            heldout = packed["heldout"].tobytes().decode("utf-8").split("\n")
    except (OSError, ValueError, KeyError) as error:
        raise EmptyCorpusError(f"{path}: not a packed corpus ({error})") from None
    if meta.get("format") != FORMAT:
        raise EmptyCorpusError(f"{path}: not a packed corpus of this version ({meta.get('format')!r})")
    if meta["tokenizer"] != tokenizer_fingerprint(tokenizer):
        raise TokenizerMismatchError(f"{path} was tokenized with another tokenizer than the teacher's; pack it again")
    for name, value in (("max_length", max_length), ("heldout_percent", heldout_percent)):
        if meta[name] != value:
            flag = "--" + name.replace("_", "-")
            raise InvalidOptionError(f"{path} was packed with {flag} {meta[name]}, this run has {flag} {value}")
    if tokens.size and tokens.max() >= vocabulary.size:
        raise TokenizerMismatchError(f"{path}: token id {tokens.max()} is outside the model's {vocabulary.size} rows")
    train = np.split(tokens, np.cumsum(lengths)[:-1]) if len(lengths) else []
    return Corpus(train, [p for p in heldout if p], 1)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m model_export.distill.pack", description=__doc__.split("\n\n")[0])
    parser.add_argument("tokenizer", help="checkpoint directory (or hub id) whose tokenizer the run's teacher has")
    parser.add_argument("corpus", nargs="+", help="text files, or directories of *.txt/*.text/*.md files")
    parser.add_argument("--out", type=Path, required=True, help=f"the packed corpus to write (*{SUFFIX})")
    parser.add_argument("--max-length", type=int, default=128)
    parser.add_argument("--heldout-percent", type=float, default=5.0)
    args = parser.parse_args(argv)
    try:
        print(pack(args.tokenizer, args.corpus, args.out, args.max_length, args.heldout_percent))
    except ExportError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    return 0


def pack(tokenizer_source: str, corpus: list[str], out: Path, max_length: int, heldout_percent: float) -> Path:
    import transformers

    from model_export.distill.data import load_corpus
    from model_export.distill.teacher import check_vocabulary
    from model_export.loading import resolve_source

    if not out.name.endswith(SUFFIX):
        raise InvalidOptionError(f"--out {out}: the packed corpus's name ends in {SUFFIX}")
    tokenizer = transformers.AutoTokenizer.from_pretrained(resolve_source(tokenizer_source).directory)
    vocabulary = check_vocabulary(tokenizer, len(tokenizer), tokenizer_source)
    loaded = load_corpus(corpus, tokenizer, vocabulary, max_length, heldout_percent)
    return write_packed(out, loaded.train, loaded.heldout, tokenizer, max_length, heldout_percent)


if __name__ == "__main__":
    sys.exit(main())
