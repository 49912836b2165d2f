"""all-MiniLM-L6-v2 (BertModel) -> DistilBertForMaskedLM, weight for weight.

BERT and DistilBERT layers compute the same function; only names differ. DistilBERT has no
token-type embeddings, and BERT adds token_type_embeddings[0] to every position when
token_type_ids are all zero (as for single texts), so that row is folded into the position
embeddings. BERT's pooler is dropped (DistilBERT has none; the server pools in-graph).
The MLM head is new: vocab_projector is tied to the word embeddings as in distilbert-base-uncased,
so only vocab_transform, vocab_layer_norm and the projector bias (~180k parameters) are free; the
demo's training also changes some body weights (`weights.py`), the word embeddings never.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch
    import transformers

_LAYER_MAP = {
    "attention.self.query": "attention.q_lin",
    "attention.self.key": "attention.k_lin",
    "attention.self.value": "attention.v_lin",
    "attention.output.dense": "attention.out_lin",
    "attention.output.LayerNorm": "sa_layer_norm",
    "intermediate.dense": "ffn.lin1",
    "output.dense": "ffn.lin2",
    "output.LayerNorm": "output_layer_norm",
}
HEAD_PARAMETERS = ("vocab_transform.weight", "vocab_transform.bias", "vocab_layer_norm.weight",
                   "vocab_layer_norm.bias", "vocab_projector.bias")


class ConversionError(ValueError):
    """The BERT checkpoint cannot be mapped onto DistilBERT (the message says which part)."""


def distilbert_config(bert_config: transformers.BertConfig) -> transformers.DistilBertConfig:
    import transformers

    if bert_config.hidden_act != "gelu":
        raise ConversionError(f"hidden_act {bert_config.hidden_act!r}: DistilBERT supports gelu here")
    if getattr(bert_config, "position_embedding_type", "absolute") != "absolute":
        raise ConversionError("only absolute position embeddings map onto DistilBERT")
    if abs(bert_config.layer_norm_eps - 1e-12) > 1e-15:
        raise ConversionError(f"layer_norm_eps {bert_config.layer_norm_eps}: DistilBERT hard-codes 1e-12")
    return transformers.DistilBertConfig(
        vocab_size=bert_config.vocab_size,
        max_position_embeddings=bert_config.max_position_embeddings,
        n_layers=bert_config.num_hidden_layers,
        n_heads=bert_config.num_attention_heads,
        dim=bert_config.hidden_size,
        hidden_dim=bert_config.intermediate_size,
        activation="gelu",
        pad_token_id=bert_config.pad_token_id,
        sinusoidal_pos_embds=False,
        tie_word_embeddings=True,
        architectures=["DistilBertForMaskedLM"],
    )


def convert_state_dict(bert_state: dict[str, torch.Tensor], num_layers: int) -> dict[str, torch.Tensor]:
    """DistilBERT body weights (keys under `distilbert.`) from a BertModel state dict."""
    state = {key.removeprefix("bert."): value for key, value in bert_state.items()}
    out = {
        "distilbert.embeddings.word_embeddings.weight": state["embeddings.word_embeddings.weight"],
        "distilbert.embeddings.position_embeddings.weight": state["embeddings.position_embeddings.weight"]
        + state["embeddings.token_type_embeddings.weight"][0],
        "distilbert.embeddings.LayerNorm.weight": state["embeddings.LayerNorm.weight"],
        "distilbert.embeddings.LayerNorm.bias": state["embeddings.LayerNorm.bias"],
    }
    for index in range(num_layers):
        for bert_name, distil_name in _LAYER_MAP.items():
            for kind in ("weight", "bias"):
                out[f"distilbert.transformer.layer.{index}.{distil_name}.{kind}"] = state[
                    f"encoder.layer.{index}.{bert_name}.{kind}"
                ]
    return {key: value.detach().clone().float() for key, value in out.items()}


def convert_minilm(source: Path, trained: Mapping[str, torch.Tensor] | None = None) -> transformers.DistilBertForMaskedLM:
    """Load the BertModel at `source` and return the equivalent DistilBertForMaskedLM (eval mode).

    `trained` holds the demo's trained weights (`weights.load_trained`): at least HEAD_PARAMETERS,
    and any layer replacements or low-rank updates (`weights.apply_trained`). Without it the head
    keeps its random initialisation and the body is exactly all-MiniLM-L6-v2.
    """
    import torch
    import transformers
    from safetensors.torch import load_file

    from model_export.default_model.weights import apply_trained

    # The weights are read directly: BertModel would only add a pooler we drop (and warn about it).
    bert_config = transformers.BertConfig.from_pretrained(str(source))
    config = distilbert_config(bert_config)
    torch.manual_seed(0)
    model = transformers.DistilBertForMaskedLM(config).eval()
    body = convert_state_dict(load_file(str(Path(source) / "model.safetensors")), config.n_layers)
    expected = {key for key in model.state_dict() if key.startswith("distilbert.")}
    if set(body) != expected:
        raise ConversionError(f"key mismatch: missing {sorted(expected - set(body))[:3]}, extra {sorted(set(body) - expected)[:3]}")
    result = model.load_state_dict(body, strict=False)
    unexpected_missing = [key for key in result.missing_keys if key not in HEAD_PARAMETERS and key != "vocab_projector.weight"]
    if unexpected_missing or result.unexpected_keys:
        raise ConversionError(f"load failed: missing {unexpected_missing[:3]}, unexpected {result.unexpected_keys[:3]}")
    model.tie_weights()
    if model.vocab_projector.weight.data_ptr() != model.distilbert.embeddings.word_embeddings.weight.data_ptr():
        raise ConversionError("vocab_projector is not tied to the word embeddings")
    if trained is not None:
        missing = set(HEAD_PARAMETERS) - set(trained)
        if missing:
            raise ConversionError(f"trained weights lack the head's {sorted(missing)}")
        apply_trained(model, trained)
    return model


def max_hidden_state_diff(source: Path, model: transformers.DistilBertForMaskedLM, texts: list[str]) -> float:
    """Largest |hidden state difference| between the original BertModel and the converted body."""
    import torch
    import transformers
    from tokenizers import Tokenizer

    bert = transformers.BertModel.from_pretrained(str(source), add_pooling_layer=False).eval()
    tokenizer = Tokenizer.from_file(str(Path(source) / "tokenizer.json"))
    tokenizer.no_truncation()
    tokenizer.enable_padding(pad_id=0, pad_token="[PAD]")
    encodings = tokenizer.encode_batch(texts)
    ids = torch.tensor([e.ids for e in encodings])
    mask = torch.tensor([e.attention_mask for e in encodings])
    with torch.no_grad():
        expected = bert(input_ids=ids, attention_mask=mask).last_hidden_state
        actual = model.distilbert(input_ids=ids, attention_mask=mask).last_hidden_state
    keep = mask.bool()
    return float((expected[keep] - actual[keep]).abs().max())
