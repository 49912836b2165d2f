"""The receipt every exported model directory carries, and its verification.

This module is the contract between the exporter (which writes it) and the server (which refuses
a directory it cannot trust). It imports nothing heavier than pydantic so the runtime image, which
has no torch, can use it.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

MANIFEST_FILE = "manifest.json"
TOKENIZER_FILE = "tokenizer.json"
FORMAT_VERSION = 1

# fp32-unfused (for TensorRT) and fp16-packed (CUDA, padding-free) are the GPU variants: model_export/gpu_variants.py
VariantName = Literal["fp32", "fp16", "int8", "fp32-unfused", "fp16-packed"]
Task = Literal["embed", "fill-mask", "text-classification", "token-classification"]
# A classifier's manifest has exactly one of these in `tasks`, and a `classifier` block.
CLASSIFICATION_TASKS: tuple[Task, ...] = ("text-classification", "token-classification")
ProblemType = Literal["single_label_classification", "multi_label_classification", "regression"]
Pooling = Literal["mean", "cls"]

# Graph I/O names. The server binds these; the exporter must produce exactly these.
INPUT_IDS = "input_ids"
ATTENTION_MASK = "attention_mask"
SENTENCE_EMBEDDING = "sentence_embedding"  # [batch, hidden] float32, pooled, not normalized
MASK_LOGITS = "mask_logits"  # [num_masks, vocab] float32, only rows where input_ids == mask id
MASK_POSITIONS = "mask_positions"  # [num_masks, 2] int64, (batch index, sequence index), row-major order
# Classifiers: [batch, num_labels] float32 for text-classification, [batch, seq, num_labels] for
# token-classification; raw scores, no softmax/sigmoid (the server applies problem_type's function).
LOGITS = "logits"
# [batch, seq] int64: an input of BERT classifiers' graphs only (see classifier_takes_token_types), so
# the second text of a pair gets segment B embeddings. DistilBERT has no segment embeddings, and BERT
# embed/fill-mask graphs serve single texts (their token types are all 0, folded into the graph).
TOKEN_TYPE_IDS = "token_type_ids"


def classifier_takes_token_types(model_type: str) -> bool:
    """Whether a classifier's graph has the TOKEN_TYPE_IDS input (embed and fill-mask graphs never do)."""
    return model_type == "bert"


CPU_PROVIDER = "CPUExecutionProvider"
CUDA_PROVIDER = "CUDAExecutionProvider"
TENSORRT_PROVIDER = "TensorrtExecutionProvider"

# The one table of which variants each execution provider serves, best first: the server loads the
# first one a model directory has, and every manifest's intended_providers is read from it. CUDA runs
# the fp16 graph; the packed fp16 graph (padding-free) is its opt-in until a GPU run shows it pays.
# TensorRT takes the unfused fp32 graph, whose plain ONNX ops it compiles whole, and builds its own fp16
# engine (trt_fp16_enable); the fused fp32 graph, then fp16, are its fallbacks. CPU serves fp32, exact
# against PyTorch; int8 (about 1.6x faster, cosine >= 0.99) is one setting away.
VARIANTS_BY_PROVIDER: dict[str, tuple[VariantName, ...]] = {
    CPU_PROVIDER: ("fp32", "int8"),
    CUDA_PROVIDER: ("fp16", "fp32", "fp16-packed"),
    TENSORRT_PROVIDER: ("fp32-unfused", "fp32", "fp16"),
}


def intended_providers(variant: str) -> list[str]:
    """The providers that serve `variant`, those that prefer it first."""
    serving = [provider for provider, variants in VARIANTS_BY_PROVIDER.items() if variant in variants]
    return sorted(serving, key=lambda provider: VARIANTS_BY_PROVIDER[provider].index(variant))


class ManifestError(Exception):
    """The directory is not something the server can serve; the message says why, in one line."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Source(_Strict):
    kind: Literal["hub", "local"]
    id: str = Field(description="Hub id or absolute path of the checkpoint.")
    revision: str | None = Field(default=None, description="Hub commit, when known.")
    weights_sha256: str = Field(description="sha256 of the weights file(s) the export read.")


class SpecialToken(_Strict):
    id: int
    token: str


class SpecialTokens(_Strict):
    cls: SpecialToken
    sep: SpecialToken
    pad: SpecialToken
    mask: SpecialToken | None = None
    unk: SpecialToken | None = None


class Architecture(_Strict):
    model_type: Literal["distilbert", "bert"]
    architecture: str = Field(description="transformers class of the checkpoint, e.g. DistilBertForMaskedLM.")
    num_layers: int
    num_heads: int
    hidden_size: int
    vocab_size: int
    max_position_embeddings: int | None = Field(
        default=None,
        description="Rows of the position table: the longest input the graph can take. None in manifests that predate it.",
    )


class Parity(_Strict):
    """How close a variant came to PyTorch on the fixed validation sentences."""

    embedding_max_abs_diff: float | None = Field(default=None, description="None for classifiers, which have no embedding output.")
    embedding_min_cosine: float | None = None
    mask_logits_max_abs_diff: float | None = None
    top1_agreement: float | None = None
    top5_identical: bool | None = None
    top_k_agreement_with_pipeline: float | None = None
    logits_max_abs_diff: float | None = Field(default=None, description="Classifiers: worst logit difference, sentences and pairs.")
    argmax_agreement: float | None = Field(
        default=None,
        description="Classifiers: share of rows (sequences, or tokens) whose argmax label matches PyTorch's; "
        "for one logit, whose sign (sigmoid > 0.5) does.",
    )
    sentences: int
    gate: str = Field(description="The gate this variant passed, in words.")


class Classifier(_Strict):
    """What the logits mean: the label names and which function turns them into scores."""

    problem_type: ProblemType | None = Field(
        description="config.problem_type as the checkpoint saved it. None (unset) means what the text-classification "
        "pipeline does: sigmoid for one logit, softmax for more."
    )
    id2label: dict[int, str]
    num_labels: int = Field(ge=1)
    pair_input: bool = Field(description="The tokenizer builds [CLS] A [SEP] B [SEP] for a pair of texts.")

    @model_validator(mode="after")
    def _labels_cover_logits(self) -> Classifier:
        if sorted(self.id2label) != list(range(self.num_labels)):
            raise ValueError(f"id2label must have keys 0..{self.num_labels - 1}, has {sorted(self.id2label)}")
        return self


class Int8Receipt(_Strict):
    """How the int8 file was quantized, and which products the exporter's search kept in float32."""

    method: str = Field(description="The quantization, in words.")
    calibration_sentences: int = Field(description="Sentences whose activation ranges chose the outlier channels.")
    smoothed_nodes: int = Field(description="Products whose outlier input channels were migrated into their weights.")
    quantized_nodes: int = Field(description="Matrix products computed in int8.")
    excluded_nodes: list[str] = Field(
        description="Graph nodes kept in float32: the fewest the exporter's sensitivity search needed to pass the gate."
    )
    search_evaluations: int = Field(description="Quantize-and-measure rounds the search took.")


class Variant(_Strict):
    file: str
    sha256: str
    dtype: Literal["float32", "float16", "int8"]
    opset: int
    onnxruntime_version: str
    fused_ops: dict[str, int]
    fusion_asserted: bool = Field(description="False only when exported with --allow-unfused.")
    parity: Parity | None = Field(description="None only when the export could not gate it: see gate_pending.")
    gate_pending: str | None = Field(
        default=None, description="Why the export did not gate this variant, and where it is gated (fp16-packed: on CUDA)."
    )
    intended_providers: list[str] = Field(description="The providers that serve this variant, those that prefer it first.")
    quantization: str | None = Field(default=None, description="int8 only: which operators were quantized.")
    int8: Int8Receipt | None = Field(default=None, description="int8 only: the quantization's receipt. None in manifests that predate it.")


class Manifest(_Strict):
    format_version: int = FORMAT_VERSION
    model_id: str = Field(description="Name the server reports, e.g. distilbert-base-uncased.")
    source: Source
    arch: Architecture
    special_tokens: SpecialTokens
    max_length: int
    max_length_source: str | None = Field(
        default=None,
        description="Where max_length came from: requested, sentence_bert_config.json max_seq_length, "
        "config.json max_position_embeddings, or the exporter's cap. None in manifests that predate it.",
    )
    pooling: Pooling
    tasks: list[Task]
    tokenizer_file: str = TOKENIZER_FILE
    tokenizer_sha256: str
    clean_up_tokenization_spaces: bool = Field(
        default=False,
        description="The checkpoint tokenizer's setting, which lives outside tokenizer.json; the server's decode follows it.",
    )
    classifier: Classifier | None = Field(default=None, description="Present iff the task is a classification task.")
    variants: dict[VariantName, Variant]
    exporter_version: str
    created_at: str
    demo: bool = Field(default=False, description="True for the offline demo default model.")
    notes: list[str] = Field(default_factory=list)

    @model_validator(mode="after")
    def _classifier_iff_classification_task(self) -> Manifest:
        classifying = [task for task in self.tasks if task in CLASSIFICATION_TASKS]
        if classifying and len(self.tasks) != 1:
            raise ValueError(f"a classifier has exactly one task, not {self.tasks}")
        if bool(classifying) != (self.classifier is not None):
            raise ValueError("the classifier block is present iff the task is text- or token-classification")
        return self

    def variant(self, name: str) -> Variant:
        if name not in self.variants:
            raise ManifestError(f"variant {name!r} is not in this model directory (has: {', '.join(self.variants)})")
        return self.variants[name]  # type: ignore[index]


def sha256_file(path: Path, chunk_size: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(chunk_size):
            digest.update(chunk)
    return digest.hexdigest()


def write_manifest(directory: Path, manifest: Manifest) -> Path:
    path = directory / MANIFEST_FILE
    path.write_text(json.dumps(manifest.model_dump(mode="json"), indent=2) + "\n")
    return path


def read_manifest(directory: Path) -> Manifest:
    """Parse the manifest without checking files; use `verify_model_dir` before serving."""
    path = Path(directory) / MANIFEST_FILE
    if not path.is_file():
        raise ManifestError(f"{directory}: no {MANIFEST_FILE}; export the model with `python -m model_export`")
    try:
        manifest = Manifest.model_validate_json(path.read_text())
    except ValidationError as error:
        first = error.errors()[0]
        where = ".".join(str(part) for part in first["loc"]) or "the top level"
        raise ManifestError(f"{path}: invalid manifest at {where}: {first['msg']}") from None
    if manifest.format_version != FORMAT_VERSION:
        raise ManifestError(f"{path}: format_version {manifest.format_version}, this server reads {FORMAT_VERSION}")
    positions = manifest.arch.max_position_embeddings
    if positions is not None and manifest.max_length > positions:
        raise ManifestError(
            f"{path}: max_length {manifest.max_length} exceeds the position table (arch.max_position_embeddings {positions})"
        )
    return manifest


def model_file(directory: Path, name: str, listed_as: str = "a file") -> Path:
    """`name`, as the manifest lists it, resolved inside `directory` (symlinks followed).

    A manifest names files of its own directory only: `..`, an absolute path or a symlink that
    leads out is refused before anything opens or hashes it.
    """
    root = Path(directory).resolve()
    path = (root / name).resolve()
    if not path.is_relative_to(root) or path == root:
        raise ManifestError(
            f"the manifest lists {listed_as} {name!r}, which resolves outside the model directory (to {path})"
        )
    return path


def verify_model_dir(directory: Path, variants: list[str] | None = None) -> Manifest:
    """Read the manifest, check that every file it lists lies inside `directory`, and check the
    tokenizer's and the named variants' checksums (all if None)."""
    directory = Path(directory)
    manifest = read_manifest(directory)
    tokenizer = model_file(directory, manifest.tokenizer_file, "the tokenizer")
    files = {name: model_file(directory, variant.file, f"variant {name}") for name, variant in manifest.variants.items()}
    _check_file(tokenizer, manifest.tokenizer_sha256)
    for name in variants if variants is not None else list(manifest.variants):
        variant = manifest.variant(name)  # refuses a name the manifest does not list
        _check_file(files[name], variant.sha256)
    return manifest


def verify_variant(directory: Path, manifest: Manifest, name: str) -> Path:
    """Variant `name`'s file, inside `directory`, once its checksum matches: for a loader given a manifest
    that `verify_model_dir` returned, so the tokenizer is not hashed a second time."""
    variant = manifest.variant(name)
    path = model_file(Path(directory), variant.file, f"variant {name}")
    _check_file(path, variant.sha256)
    return path


def _check_file(path: Path, expected_sha256: str) -> None:
    if not path.is_file():
        raise ManifestError(f"{path}: listed in the manifest but missing")
    actual = sha256_file(path)
    if actual != expected_sha256:
        raise ManifestError(f"{path}: sha256 {actual[:12]}... does not match the manifest's {expected_sha256[:12]}...")
