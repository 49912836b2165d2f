"""export_model: load -> export -> fuse -> derive variants -> validate -> write, atomically.

The directory is built in a temporary sibling of `out_dir` and renamed into place only when
everything passed, so a failed export leaves nothing half-written behind.
"""

from __future__ import annotations

import shutil
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from pathlib import Path

import onnx
import onnxruntime

from model_export import __version__
from model_export.errors import ExportError, InvalidOptionError, ParityError
from model_export.fusion import fused_op_counts, optimize
from model_export.gpu_variants import GPU_DTYPES, GPU_VARIANT_NAMES, NEEDS_CUDA, build_gpu_variant, gate_name
from model_export.loading import (
    LoadedCheckpoint,
    ResolvedSource,
    load_checkpoint,
    resolve_source,
    sentence_transformers_max_length,
    weights_sha256,
)
from model_export.manifest import (
    MANIFEST_FILE,
    TOKENIZER_FILE,
    Architecture,
    Classifier,
    Int8Receipt,
    Manifest,
    Parity,
    Source,
    SpecialToken,
    SpecialTokens,
    Variant,
    classifier_takes_token_types,
    intended_providers,
    sha256_file,
    write_manifest,
)
from model_export.parity import GATES, Reference, compute_classifier_reference, compute_reference, measure
from model_export.staging import make_staging_dir, move_into_place
from model_export.quantize import build_int8
from model_export.variants import DTYPES, VARIANT_NAMES, build_variant, variant_file

Progress = Callable[[str], None]
MAX_LENGTH_CAP = 512


@dataclass(frozen=True)
class ExportOptions:
    variants: tuple[str, ...] = VARIANT_NAMES
    opset: int = 17
    # None: sentence_bert_config.json's max_seq_length, else config.json's max_position_embeddings; at most 512
    max_length: int | None = None
    pooling: str = "mean"
    allow_unfused: bool = False
    revision: str | None = None
    model_id: str | None = None  # None: the hub id, or the checkpoint directory's name
    demo: bool = False

    def check(self) -> None:
        known = VARIANT_NAMES + GPU_VARIANT_NAMES
        unknown = [name for name in self.variants if name not in known]
        if unknown or not self.variants:
            raise InvalidOptionError(f"variants must be among {', '.join(known)} (got {', '.join(self.variants) or 'none'})")
        if self.pooling not in ("mean", "cls"):
            raise InvalidOptionError(f"pooling must be mean or cls (got {self.pooling!r})")
        if not 14 <= self.opset <= 20:
            raise InvalidOptionError(f"opset must be between 14 and 20 (got {self.opset})")
        if self.max_length is not None and self.max_length < 2:
            raise InvalidOptionError(f"max_length must be at least 2 (got {self.max_length})")


def stderr_progress(message: str) -> None:
    print(f"[export] {message}", file=sys.stderr, flush=True)


def export_model(
    source: str, out_dir: Path, options: ExportOptions = ExportOptions(), progress: Progress | None = None
) -> Manifest:
    """Export SOURCE (hub id or checkpoint directory) into `out_dir`; returns the manifest written there."""
    say = progress or stderr_progress
    options.check()
    out_dir = Path(out_dir).expanduser().absolute()
    staging = make_staging_dir(out_dir, MANIFEST_FILE, "model directory")
    try:
        with tempfile.TemporaryDirectory(prefix="distilserve-export-") as scratch:
            manifest = _build(source, staging, Path(scratch), options, say)
        move_into_place(staging, out_dir)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    say(f"wrote {out_dir} ({', '.join(manifest.variants)})")
    return manifest


def _build(source: str, staging: Path, scratch: Path, options: ExportOptions, say: Progress) -> Manifest:
    loaded = _load(source, options, say)
    raw_path = _export_graph(loaded, scratch / "model.raw.onnx", options, say)
    notes: list[str] = []  # the manifest's notes; stages append what a reader of the receipt should know
    optimized = _optimize(raw_path, scratch / "model.optimized.onnx", loaded.arch, options.allow_unfused, notes, say)
    optimized = replace(optimized, raw_path=raw_path)  # the GPU variant for TensorRT is the unfused graph
    reference = _reference(loaded, options.pooling, say)
    variants = _build_variants(optimized, reference, staging, scratch, options, notes, say)
    return _write_manifest(loaded, variants, notes, staging, options)


@dataclass(frozen=True)
class _Loaded:
    """What loading learned about the checkpoint; every later stage reads from it."""

    resolved: ResolvedSource
    checkpoint: LoadedCheckpoint
    arch: Architecture
    special: SpecialTokens
    max_length: int
    max_length_source: str
    tasks: list[str]
    classifier: Classifier | None  # what a classifier's logits mean; None for embed/fill-mask


@dataclass(frozen=True)
class _Optimized:
    path: Path
    fusion_asserted: bool  # False only when --allow-unfused let an incomplete fusion through
    raw_path: Path | None = None  # the graph before fusion


@dataclass(frozen=True)
class _Passed:
    """A variant file in scratch that cleared its gate."""

    path: Path
    parity: Parity | None  # None: no gate can run here (the packed graph; gated on CUDA)
    int8: Int8Receipt | None


def _load(source: str, options: ExportOptions, say: Progress) -> _Loaded:
    say(f"loading {source}" + (f" @ {options.revision}" if options.revision else ""))
    resolved = resolve_source(source, options.revision)
    checkpoint = load_checkpoint(resolved)
    config = checkpoint.config
    arch = Architecture(
        model_type=config.model_type,
        architecture=checkpoint.architecture,
        num_layers=config.num_hidden_layers,
        num_heads=config.num_attention_heads,
        hidden_size=config.hidden_size,
        vocab_size=config.vocab_size,
        max_position_embeddings=config.max_position_embeddings,
    )
    special = _special_tokens(checkpoint)
    max_length, max_length_source = _max_length(config.max_position_embeddings, resolved.directory, options.max_length)
    tasks = {"encoder": ["embed"], "masked-lm": ["embed", "fill-mask"]}.get(checkpoint.head, [checkpoint.head])
    classifier = _classifier(checkpoint) if checkpoint.is_classifier else None
    say(f"loaded {checkpoint.architecture}: {arch.num_layers} layers, {arch.num_heads} heads, hidden {arch.hidden_size}, tasks {', '.join(tasks)}")
    if classifier is not None:
        say(f"{classifier.num_labels} labels ({classifier.problem_type or 'problem_type unset'}), pairs {'accepted' if classifier.pair_input else 'refused'}")
    say(f"max_length {max_length} ({max_length_source})")
    return _Loaded(resolved, checkpoint, arch, special, max_length, max_length_source, tasks, classifier)


def _classifier(checkpoint: LoadedCheckpoint) -> Classifier:
    config, tokenizer = checkpoint.config, checkpoint.tokenizer
    # Kept as saved, unset included: the pipeline reads an unset problem_type with one logit as sigmoid,
    # which a guess of "regression" (what transformers' loss assumes) would turn into raw scores.
    problem_type = config.problem_type
    # A pair is [CLS] A [SEP] B [SEP]; BERT also needs a second segment embedding for B's type ids.
    pair_input = tokenizer.num_special_tokens_to_add(pair=True) > tokenizer.num_special_tokens_to_add(pair=False)
    if classifier_takes_token_types(config.model_type):
        pair_input = pair_input and config.type_vocab_size >= 2
    return Classifier(
        problem_type=problem_type,
        id2label={int(index): str(label) for index, label in config.id2label.items()},
        num_labels=config.num_labels,
        pair_input=pair_input,
    )


def _export_graph(loaded: _Loaded, raw_path: Path, options: ExportOptions, say: Progress) -> Path:
    # Imported here so `--help` and option errors do not pay for importing torch.
    from model_export.graph import ClassifierGraph, ServingGraph, mlm_head
    from model_export.onnx_export import export_onnx

    checkpoint, special = loaded.checkpoint, loaded.special
    graph: ServingGraph | ClassifierGraph
    if checkpoint.is_classifier:
        say(f"exporting ONNX (opset {options.opset}, {checkpoint.head} logits)")
        takes_token_types = classifier_takes_token_types(loaded.arch.model_type)
        graph = ClassifierGraph(checkpoint.model, takes_token_types, per_token=checkpoint.head == "token-classification")
    else:
        say(f"exporting ONNX (opset {options.opset}, pooling {options.pooling})")
        head = mlm_head(checkpoint.model) if checkpoint.has_mlm_head else None
        graph = ServingGraph(checkpoint.encoder, head, special.mask.id if special.mask else None, options.pooling)
    export_onnx(graph, raw_path, options.opset, example_token_id=special.unk.id if special.unk else special.cls.id)
    return raw_path


def _optimize(
    raw_path: Path, optimized_path: Path, arch: Architecture, allow_unfused: bool, notes: list[str], say: Progress
) -> _Optimized:
    say("fusing (onnxruntime transformers optimizer, model_type=bert)")
    counts, fusion_asserted = optimize(raw_path, optimized_path, arch.num_heads, arch.hidden_size, arch.num_layers, allow_unfused)
    say("fused ops: " + ", ".join(f"{op}={count}" for op, count in counts.items()))
    if not fusion_asserted:
        notes.append("exported with --allow-unfused: the fused-op assertion did not hold")
        say("WARNING: fusion incomplete, continuing because of --allow-unfused")
    return _Optimized(optimized_path, fusion_asserted)


def _reference(loaded: _Loaded, pooling: str, say: Progress) -> Reference:
    checkpoint = loaded.checkpoint
    if loaded.classifier is not None:
        reference = compute_classifier_reference(checkpoint.model, checkpoint.tokenizer, loaded.max_length, loaded.classifier.pair_input)
        pairs = f" and {len(reference.pairs.sentences)} sentence pairs" if reference.pairs is not None else ""
        say(f"validating against PyTorch on {len(reference.sentences)} sentences{pairs} (padded batches)")
        return reference
    reference = compute_reference(checkpoint.model, checkpoint.tokenizer, checkpoint.has_mlm_head, pooling, loaded.max_length)
    against = " and pipeline('fill-mask')" if checkpoint.has_mlm_head else ""
    say(f"validating against PyTorch on {len(reference.sentences)} sentences (padded batch){against}")
    return reference


def _build_variants(
    optimized: _Optimized,
    reference: Reference,
    staging: Path,
    scratch: Path,
    options: ExportOptions,
    notes: list[str],
    say: Progress,
) -> dict[str, Variant]:
    """Every requested variant that passes its gate, moved into `staging`; a miss is a note, not an error."""
    variants: dict[str, Variant] = {}
    for name in options.variants:
        passed = _first_passing_build(name, optimized, reference, scratch / variant_file(name), notes, say)
        if passed is not None:
            variants[name] = _keep_variant(name, passed, staging, options.opset, optimized.fusion_asserted)
    if not variants:
        raise ParityError("no variant passed its parity gate: " + "; ".join(notes))
    return variants


def _first_passing_build(
    name: str, optimized: _Optimized, reference: Reference, path: Path, notes: list[str], say: Progress
) -> _Passed | None:
    """Build `name` at `path` and measure it against its gate. None if it missed."""
    if name == "int8":
        return _searched_int8(optimized.path, reference, path, notes, say)
    if name == "fp32":
        shutil.copyfile(optimized.path, path)
    else:
        say(f"converting {name}")
        if name in GPU_VARIANT_NAMES and optimized.raw_path is not None:
            build_gpu_variant(name, optimized.raw_path, optimized.path, path)
        else:
            build_variant(name, optimized.path, path)
    gated_as = gate_name(name)
    if gated_as is None:
        say(f"not validating {name}: {NEEDS_CUDA}")
        return _Passed(path, None, None)
    gate = GATES[gated_as]
    parity = measure(path, reference, gate)
    say(f"validating {name}: {describe_parity(parity)}")
    return _passed_or_noted(name, path, parity, gate.failures(parity), None, notes, say)


def _searched_int8(optimized_path: Path, reference: Reference, path: Path, notes: list[str], say: Progress) -> _Passed | None:
    say("quantizing int8 (outlier channels smoothed, dynamic per-channel), searching which products must stay fp32")
    built = build_int8(optimized_path, path, reference, GATES["int8"], reference.calibration_feeds, path.parent)
    receipt = built.receipt
    kept = f"{len(receipt.excluded_nodes)} kept fp32" + (f" ({', '.join(receipt.excluded_nodes)})" if receipt.excluded_nodes else "")
    say(f"validating int8: {describe_parity(built.parity)}; {receipt.quantized_nodes} products int8, {kept}, {receipt.search_evaluations} trials")
    missed = [*built.missed, f"{kept}, the most the search allows"] if built.missed else []
    return _passed_or_noted("int8", path, built.parity, missed, receipt, notes, say)


def _passed_or_noted(
    name: str, path: Path, parity: Parity, missed: list[str], int8: Int8Receipt | None, notes: list[str], say: Progress
) -> _Passed | None:
    if not missed:
        return _Passed(path, parity, int8)
    reason = f"{name} missed its gate ({'; '.join(missed)}); not written"
    notes.append(reason)
    say(reason)
    return None


def _keep_variant(name: str, passed: _Passed, staging: Path, opset: int, fusion_asserted: bool) -> Variant:
    kept = staging / variant_file(name)
    shutil.move(passed.path, kept)
    return Variant(
        file=kept.name,
        sha256=sha256_file(kept),
        dtype=(DTYPES | GPU_DTYPES)[name],
        opset=opset,
        onnxruntime_version=onnxruntime.__version__,
        fused_ops=fused_op_counts(onnx.load(str(kept), load_external_data=False)),
        fusion_asserted=fusion_asserted,
        parity=passed.parity,
        gate_pending=NEEDS_CUDA if passed.parity is None else None,
        intended_providers=intended_providers(name),
        quantization=passed.int8.method if passed.int8 else None,
        int8=passed.int8,
    )


def _write_manifest(
    loaded: _Loaded, variants: dict[str, Variant], notes: list[str], staging: Path, options: ExportOptions
) -> Manifest:
    resolved, checkpoint = loaded.resolved, loaded.checkpoint
    tokenizer_path = staging / TOKENIZER_FILE
    _save_tokenizer(checkpoint, tokenizer_path)
    manifest = Manifest(
        model_id=options.model_id or (resolved.id if resolved.kind == "hub" else resolved.directory.name),
        source=Source(kind=resolved.kind, id=resolved.id, revision=resolved.revision, weights_sha256=weights_sha256(resolved)),
        arch=loaded.arch,
        special_tokens=loaded.special,
        max_length=loaded.max_length,
        max_length_source=loaded.max_length_source,
        pooling="cls" if loaded.classifier is not None else options.pooling,  # a classifier's own head pools
        tasks=loaded.tasks,
        classifier=loaded.classifier,
        tokenizer_sha256=sha256_file(tokenizer_path),
        clean_up_tokenization_spaces=decode_cleans_up_spaces(checkpoint.tokenizer),
        variants=variants,
        exporter_version=__version__,
        created_at=datetime.now(timezone.utc).isoformat(timespec="seconds"),
        demo=options.demo,
        notes=notes,
    )
    write_manifest(staging, manifest)
    return manifest


def describe_parity(parity: Parity) -> str:
    """A gate's figures on one line, as the export prints them."""
    if parity.argmax_agreement is not None:
        return f"logits max|diff| {parity.logits_max_abs_diff:.2e}, argmax agreement {parity.argmax_agreement:.0%}"
    text = f"embedding max|diff| {parity.embedding_max_abs_diff:.2e}, min cosine {parity.embedding_min_cosine:.6f}"
    if parity.top1_agreement is not None:
        text += (
            f", logits max|diff| {parity.mask_logits_max_abs_diff:.2e}, top-1 agreement {parity.top1_agreement:.0%}, "
            f"top-5 identical {parity.top5_identical}, pipeline top-5 agreement {parity.top_k_agreement_with_pipeline:.0%}"
        )
    return text


def _max_length(max_position_embeddings: int, checkpoint_dir: Path, requested: int | None) -> tuple[int, str]:
    """The longest input the model directory allows, and where that number came from."""
    if requested is not None:
        if requested > max_position_embeddings:
            raise InvalidOptionError(f"max_length {requested} exceeds the model's max_position_embeddings {max_position_embeddings}")
        return requested, "requested"
    # A sentence-transformers checkpoint was trained and evaluated truncated to max_seq_length
    # (256 for all-MiniLM-L6-v2); serving longer inputs would embed text the model never saw.
    limits = [
        (max_position_embeddings, "config.json max_position_embeddings"),
        (MAX_LENGTH_CAP, f"the exporter's cap of {MAX_LENGTH_CAP}"),
    ]
    trained = sentence_transformers_max_length(checkpoint_dir)
    if trained is not None:
        limits.insert(0, (trained, "sentence_bert_config.json max_seq_length"))
    return min(limits, key=lambda limit: limit[0])


def _special_tokens(checkpoint: LoadedCheckpoint) -> SpecialTokens:
    tokenizer = checkpoint.tokenizer

    def token(name: str) -> SpecialToken | None:
        text, token_id = getattr(tokenizer, f"{name}_token", None), getattr(tokenizer, f"{name}_token_id", None)
        return SpecialToken(id=token_id, token=str(text)) if text is not None and token_id is not None else None

    found = {name: token(name) for name in ("cls", "sep", "pad", "mask", "unk")}
    required = ["cls", "sep", "pad"] + (["mask"] if checkpoint.has_mlm_head else [])
    missing = [name for name in required if found[name] is None]
    if missing:
        raise ExportError(f"{checkpoint.source.id}: the tokenizer has no {', '.join(missing)} token")
    return SpecialTokens(**found)


def decode_cleans_up_spaces(tokenizer) -> bool:  # noqa: ANN001 - a transformers fast tokenizer
    """transformers applies its clean-up to WordPiece decodes only (it would corrupt BPE output)."""
    return bool(getattr(tokenizer, "clean_up_tokenization_spaces", False)) and (
        type(tokenizer.backend_tokenizer.model).__name__ != "BPE"
    )


def _save_tokenizer(checkpoint: LoadedCheckpoint, path: Path) -> None:
    """The fast tokenizer as tokenizer.json, with padding and truncation off (the server owns both)."""
    from tokenizers import Tokenizer

    tokenizer = Tokenizer.from_str(checkpoint.tokenizer.backend_tokenizer.to_str())
    tokenizer.no_padding()
    tokenizer.no_truncation()
    tokenizer.save(str(path))
