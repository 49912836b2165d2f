"""Compare an exported variant with PyTorch on the fixed validation sentences, and gate it.

The reference is computed once per export from the original transformers model (not from the
export wrapper): embeddings pooled here in numpy from its last hidden state, mask logits read
from its full-vocab output, and fill-mask top-5 ids from transformers' `pipeline("fill-mask")`.
A classifier's reference is its logits, on the sentences and on sentence pairs.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from model_export.errors import ExportError, OutputMismatchError
from model_export.manifest import (
    ATTENTION_MASK,
    CPU_PROVIDER,
    INPUT_IDS,
    LOGITS,
    MASK_LOGITS,
    MASK_POSITIONS,
    SENTENCE_EMBEDDING,
    TOKEN_TYPE_IDS,
    Parity,
    classifier_takes_token_types,
)
from model_export.quantize_calibration import calibration_feeds
from model_export.sentences import MASK, VALIDATION_PAIRS, VALIDATION_SENTENCES

TOP_K = 5
EXTRA_BATCH_SIZES = (1, 2, 3, 4, 8)

# onnxruntime's providers argument: names, or (name, options) pairs.
Providers = Sequence[str | tuple[str, dict[str, Any]]]


@dataclass(frozen=True)
class Gate:
    """The bar a variant must clear; a None/False criterion is not checked."""

    max_abs_diff: float | None = None
    min_cosine: float | None = None
    top5_identical: bool = False
    top1_identical: bool = False
    min_top1_agreement: float | None = None
    # Cosine and top-1 also checked in length-sorted batches of EXTRA_BATCH_SIZES (1: each sentence
    # alone), as the server batches, besides the one padded batch. Dynamic int8 needs it: each run scales
    # its activations by that run's range, so a sentence's answer moves with its batch's company.
    every_batching: bool = False

    def describe(self, has_mlm: bool, classifier: bool = False) -> str:
        parts = []
        if self.max_abs_diff is not None:
            parts.append(f"max abs diff <= {self.max_abs_diff:g}")
        if self.min_cosine is not None and not classifier:
            parts.append(f"embedding cosine >= {self.min_cosine:g}")
        if has_mlm and self.top5_identical:
            parts.append("top-5 ids identical")
        top1 = "argmax" if classifier else "top-1"
        if (has_mlm or classifier) and self._top1_identical(classifier):
            parts.append(f"{top1} identical")
        if (has_mlm or classifier) and self.min_top1_agreement is not None:
            parts.append(f"{top1} agreement >= {self.min_top1_agreement:.0%}")
        if self.every_batching and parts and not classifier:
            sizes = ", ".join(str(size) for size in EXTRA_BATCH_SIZES)
            parts.append(f"in one padded batch and in length-sorted batches of {sizes}")
        return ", ".join(parts) or "none"

    def _top1_identical(self, classifier: bool) -> bool:
        # A classifier's one answer per row is its argmax: top-5 identical asks of it what top-1 identical does.
        return self.top1_identical or (classifier and self.top5_identical)

    def failures(self, parity: Parity) -> list[str]:
        """What the variant missed, in words; empty when it passed."""
        has_mlm = parity.top1_agreement is not None
        classifier = parity.argmax_agreement is not None
        missed = []
        if self.max_abs_diff is not None:
            diffs = (parity.embedding_max_abs_diff, parity.mask_logits_max_abs_diff, parity.logits_max_abs_diff)
            worst = max(diff for diff in diffs if diff is not None)
            if not worst <= self.max_abs_diff:
                missed.append(f"max abs diff {worst:.3g} > {self.max_abs_diff:g}")
        cosine = parity.embedding_min_cosine
        if self.min_cosine is not None and cosine is not None and not cosine >= self.min_cosine:
            missed.append(f"embedding cosine {cosine:.6f} < {self.min_cosine:g}")
        if has_mlm and self.top5_identical and not parity.top5_identical:
            missed.append("top-5 ids differ from PyTorch")
        top1, agreement = ("argmax", parity.argmax_agreement) if classifier else ("top-1", parity.top1_agreement)
        if agreement is not None and self._top1_identical(classifier) and agreement != 1.0:
            missed.append(f"{top1} agreement {agreement:.0%}, not identical")
        if agreement is not None and self.min_top1_agreement is not None and not agreement >= self.min_top1_agreement:
            missed.append(f"{top1} agreement {agreement:.0%} < {self.min_top1_agreement:.0%}")
        return missed


GATES: dict[str, Gate] = {
    "fp32": Gate(max_abs_diff=1e-4, top5_identical=True),
    "fp16": Gate(min_cosine=0.999, top1_identical=True),
    "int8": Gate(min_cosine=0.99, min_top1_agreement=0.90, every_batching=True),
}


@dataclass
class Reference:
    """PyTorch's answers on the validation batch, computed once per export."""

    input_ids: np.ndarray
    attention_mask: np.ndarray
    embeddings: np.ndarray | None = None  # None for a classifier
    mask_positions: np.ndarray | None = None  # [num_masks, 2]
    mask_logits: np.ndarray | None = None  # [num_masks, vocab]
    pipeline_top_k: np.ndarray | None = None  # [num_masks, TOP_K] token ids, same row order
    sentences: list[str] = field(default_factory=list)
    token_type_ids: np.ndarray | None = None  # fed to BERT classifiers' graphs only
    logits: np.ndarray | None = None  # a classifier's: [batch, labels], or [batch, seq, labels] per token
    pairs: Reference | None = None  # a classifier's answers on sentence pairs, when its tokenizer makes pairs
    # The int8 quantizer's calibration inputs (other sentences than these), one unpadded feed each.
    calibration_feeds: list[dict[str, np.ndarray]] = field(default_factory=list)

    def feed(self) -> dict[str, np.ndarray]:
        inputs = {INPUT_IDS: self.input_ids, ATTENTION_MASK: self.attention_mask}
        if self.token_type_ids is not None:
            inputs[TOKEN_TYPE_IDS] = self.token_type_ids
        return inputs

    def scored_rows(self, logits: np.ndarray) -> np.ndarray:
        """A classifier's logits as [rows, labels]: one row per sequence, or per real (unpadded) token."""
        return logits[self.attention_mask.astype(bool)] if logits.ndim == 3 else logits


def validation_sentences(mask_token: str | None) -> list[str]:
    if mask_token is None:
        return [sentence.replace(MASK, "something") for sentence in VALIDATION_SENTENCES]
    return [sentence.replace(MASK, mask_token) for sentence in VALIDATION_SENTENCES]


def mean_or_cls_pool(hidden: np.ndarray, attention_mask: np.ndarray, pooling: str) -> np.ndarray:
    if pooling == "cls":
        return hidden[:, 0]
    weights = attention_mask[..., None].astype(np.float64)
    return ((hidden * weights).sum(axis=1) / np.maximum(weights.sum(axis=1), 1e-9)).astype(np.float32)


def compute_reference(
    model: Any, tokenizer: Any, has_mlm_head: bool, pooling: str, max_length: int, device: str = "cpu"
) -> Reference:
    """PyTorch's answers, with `model` moved to `device` (a GPU gate compares against torch on the GPU)."""
    import torch

    mask_token = tokenizer.mask_token if has_mlm_head else None
    sentences = validation_sentences(mask_token)
    batch = tokenizer(sentences, padding=True, truncation=True, max_length=max_length, return_tensors="pt")
    inputs = {INPUT_IDS: batch["input_ids"], ATTENTION_MASK: batch["attention_mask"]}
    model = model.to(device)
    with torch.no_grad():
        output = model(**{name: tensor.to(device) for name, tensor in inputs.items()}, output_hidden_states=True)
    hidden = output.hidden_states[-1].cpu().numpy()
    attention_mask = inputs[ATTENTION_MASK].numpy()
    reference = Reference(
        input_ids=inputs[INPUT_IDS].numpy(),
        attention_mask=attention_mask,
        embeddings=mean_or_cls_pool(hidden, attention_mask, pooling),
        sentences=sentences,
        calibration_feeds=calibration_feeds(tokenizer, mask_token, max_length),
    )
    if has_mlm_head:
        positions = np.argwhere(reference.input_ids == tokenizer.mask_token_id)
        reference.mask_positions = positions
        reference.mask_logits = output.logits.cpu().numpy()[positions[:, 0], positions[:, 1]]
        reference.pipeline_top_k = _pipeline_top_k(model, tokenizer, sentences, device)
    return reference


def compute_classifier_reference(
    model: Any, tokenizer: Any, max_length: int, pair_input: bool, device: str = "cpu"
) -> Reference:
    """A classifier's logits on the validation sentences and, if its tokenizer makes pairs, on the
    validation pairs (truncated longest-first, as the text-classification pipeline does)."""
    import torch

    model = model.to(device)

    def answers(texts: list[str], pairs: list[str] | None) -> Reference:
        batch = tokenizer(
            texts, pairs, padding=True, truncation=True, max_length=max_length, return_token_type_ids=True, return_tensors="np"
        )
        inputs = {INPUT_IDS: batch[INPUT_IDS], ATTENTION_MASK: batch[ATTENTION_MASK]}
        if classifier_takes_token_types(model.config.model_type):
            inputs[TOKEN_TYPE_IDS] = batch[TOKEN_TYPE_IDS]
        with torch.no_grad():
            logits = model(**{name: torch.from_numpy(array).to(device) for name, array in inputs.items()}).logits
        return Reference(
            input_ids=inputs[INPUT_IDS],
            attention_mask=inputs[ATTENTION_MASK],
            token_type_ids=inputs.get(TOKEN_TYPE_IDS),
            logits=logits.cpu().numpy(),
            sentences=texts if pairs is None else [f"{a} | {b}" for a, b in zip(texts, pairs, strict=True)],
        )

    reference = answers(validation_sentences(None), None)
    if pair_input:
        reference.pairs = answers([a for a, _ in VALIDATION_PAIRS], [b for _, b in VALIDATION_PAIRS])
    return reference


def _pipeline_top_k(model: Any, tokenizer: Any, sentences: list[str], device: str) -> np.ndarray:
    """Top-k token ids from transformers' fill-mask pipeline, one row per mask, row-major."""
    from transformers import pipeline

    fill_mask = pipeline("fill-mask", model=model, tokenizer=tokenizer, top_k=TOP_K, device=device)
    rows = []
    for sentence in sentences:
        if tokenizer.mask_token not in sentence:
            continue
        result = fill_mask(sentence)
        per_mask = result if isinstance(result[0], list) else [result]
        rows.extend([candidate["token"] for candidate in candidates] for candidates in per_mask)
    return np.array(rows, dtype=np.int64)


def run_padded(session: Any, reference: Reference) -> dict[str, np.ndarray]:
    """The variant's outputs on the validation sentences in one batch, padded to the longest."""
    names = [output.name for output in session.get_outputs()]
    values = session.run(names, reference.feed())
    return dict(zip(names, values, strict=True))


def validation_session(path: Path, providers: Providers = (CPU_PROVIDER,)) -> Any:
    """A session on the first of `providers` or none at all: a gate meant for CUDA must not pass on
    onnxruntime's silent fallback to the CPU."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3
    session = ort.InferenceSession(str(path), options, providers=list(providers))
    wanted = providers[0] if isinstance(providers[0], str) else providers[0][0]
    if session.get_providers()[0] != wanted:
        raise ExportError(f"{path.name}: validation asked for {wanted}, but onnxruntime runs it on {session.get_providers()}")
    return session


def length_sorted_batches(attention_mask: np.ndarray, batch_size: int) -> list[np.ndarray]:
    """Sentence indices sorted by length (stable), in groups of `batch_size`, as the server batches."""
    order = np.argsort(attention_mask.sum(axis=1), kind="stable")
    return [order[start : start + batch_size] for start in range(0, len(order), batch_size)]


def run_regrouped(session: Any, reference: Reference, batch_size: int) -> tuple[np.ndarray, np.ndarray | None]:
    """Embeddings (sentence order) and mask logits (the reference's row order) with the validation
    sentences run in length-sorted batches of `batch_size`, each padded only to its longest."""
    embeddings = np.empty_like(reference.embeddings)
    logits_at: dict[tuple[int, int], np.ndarray] = {}
    for group in length_sorted_batches(reference.attention_mask, batch_size):
        width = int(reference.attention_mask[group].sum(axis=1).max())  # the tokenizer pads on the right
        feed = {
            INPUT_IDS: np.ascontiguousarray(reference.input_ids[group, :width]),
            ATTENTION_MASK: np.ascontiguousarray(reference.attention_mask[group, :width]),
        }
        names = [SENTENCE_EMBEDDING] + ([MASK_LOGITS, MASK_POSITIONS] if reference.mask_logits is not None else [])
        outputs = dict(zip(names, session.run(names, feed), strict=True))
        embeddings[group] = outputs[SENTENCE_EMBEDDING]
        for (row, position), logits in zip(outputs.get(MASK_POSITIONS, []), outputs.get(MASK_LOGITS, []), strict=True):
            logits_at[(int(group[row]), int(position))] = logits
    if reference.mask_positions is None:
        return embeddings, None
    return embeddings, np.stack([logits_at[(int(row), int(position))] for row, position in reference.mask_positions])


def run_onnx(path: Path, reference: Reference, providers: Providers = (CPU_PROVIDER,)) -> dict[str, np.ndarray]:
    """The variant's outputs on the validation batch, on the first of `providers` only."""
    return run_padded(validation_session(path, providers), reference)


def _cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a = a.astype(np.float64)
    b = b.astype(np.float64)
    return (a * b).sum(axis=1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))


def top_k_ids(logits: np.ndarray, k: int = TOP_K) -> np.ndarray:
    """Token ids of the k largest logits per row, largest first (ties broken by lower id)."""
    order = np.argsort(-logits, axis=1, kind="stable")
    return order[:, :k]


def _worst_over_batchings(session: Any, reference: Reference, figures: dict[str, Any]) -> None:
    """Lower `figures`' cosine and top-1 agreement to their worst over EXTRA_BATCH_SIZES, raise the diffs."""
    for batch_size in EXTRA_BATCH_SIZES:
        embeddings, logits = run_regrouped(session, reference, batch_size)
        figures["embedding_max_abs_diff"] = max(figures["embedding_max_abs_diff"], float(np.abs(embeddings - reference.embeddings).max()))
        figures["embedding_min_cosine"] = min(figures["embedding_min_cosine"], float(_cosines(embeddings, reference.embeddings).min()))
        if logits is not None and reference.mask_logits is not None:
            agreement = float((top_k_ids(logits)[:, 0] == top_k_ids(reference.mask_logits)[:, 0]).mean())
            figures["top1_agreement"] = min(figures["top1_agreement"], agreement)
            figures["mask_logits_max_abs_diff"] = max(figures["mask_logits_max_abs_diff"], float(np.abs(logits - reference.mask_logits).max()))


def measure(path: Path, reference: Reference, gate: Gate, providers: Providers = (CPU_PROVIDER,)) -> Parity:
    if reference.logits is not None:
        return _measure_classifier(path, reference, gate, providers)
    session = validation_session(path, providers)
    outputs = run_padded(session, reference)
    embeddings = outputs[SENTENCE_EMBEDDING]
    figures: dict[str, Any] = {
        "embedding_max_abs_diff": float(np.abs(embeddings - reference.embeddings).max()),
        "embedding_min_cosine": float(_cosines(embeddings, reference.embeddings).min()),
        "sentences": len(reference.sentences),
    }
    if reference.mask_logits is not None:
        if not np.array_equal(outputs[MASK_POSITIONS], reference.mask_positions):
            raise OutputMismatchError(
                f"{path.name}: mask_positions differ from where input_ids holds the mask token, so fill-mask "
                "would answer for the wrong tokens; try another --opset, and report it with the checkpoint if it persists"
            )
        logits = outputs[MASK_LOGITS]
        ours, theirs = top_k_ids(logits), top_k_ids(reference.mask_logits)
        figures["mask_logits_max_abs_diff"] = float(np.abs(logits - reference.mask_logits).max())
        figures["top1_agreement"] = float((ours[:, 0] == theirs[:, 0]).mean())
        figures["top5_identical"] = bool(np.array_equal(ours, theirs) and np.array_equal(ours, reference.pipeline_top_k))
        figures["top_k_agreement_with_pipeline"] = float((ours == reference.pipeline_top_k).all(axis=1).mean())
    if gate.every_batching:
        _worst_over_batchings(session, reference, figures)
    figures["gate"] = gate.describe(reference.mask_logits is not None)
    return Parity(**figures)


def _measure_classifier(path: Path, reference: Reference, gate: Gate, providers: Providers) -> Parity:
    """Logits and argmax against PyTorch over every scored row: sentences, then pairs."""
    batches = [reference] if reference.pairs is None else [reference, reference.pairs]
    ours = np.concatenate([batch.scored_rows(run_onnx(path, batch, providers)[LOGITS]) for batch in batches])
    theirs = np.concatenate([batch.scored_rows(batch.logits) for batch in batches])
    if ours.shape != theirs.shape:
        raise OutputMismatchError(f"{path.name}: logits have shape {ours.shape} where PyTorch's have {theirs.shape}")
    return Parity(
        logits_max_abs_diff=float(np.abs(ours - theirs).max()),
        argmax_agreement=float((_decisions(ours) == _decisions(theirs)).mean()),
        sentences=sum(len(batch.sentences) for batch in batches),
        gate=gate.describe(has_mlm=False, classifier=True),
    )


def _decisions(rows: np.ndarray) -> np.ndarray:
    """Each row's label: its argmax. One logit has no argmax to compare; it is read as the binary
    decision sigmoid(logit) > 0.5 (the function pipelines apply to it), the argmax of [0, logit]."""
    if rows.shape[1] == 1:
        rows = np.concatenate([np.zeros_like(rows), rows], axis=1)
    return rows.argmax(axis=1)
